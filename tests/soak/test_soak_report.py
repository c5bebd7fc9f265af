"""The soak's verdict on the series it samples: what counts as flat and what as growth."""

from __future__ import annotations

import math

from benchmarks.soak_load import PROTOCOLS
from benchmarks.soak_report import drift, verdict


def rows(tasks: list[float], rss: list[float] | None = None) -> list[dict[str, float]]:
    out = []
    for n, count in enumerate(tasks):
        row = {"elapsed_s": 60.0 * (n + 1), "tasks": count, "errors": 0.0, "mqtt_n_ms": 100.0}
        row["rss_mib"] = rss[n] if rss else 100.0
        row |= {f"{p}_p99_ms": 50.0 for p in PROTOCOLS}
        out.append(row)
    return out


def check(lines: list[str], name: str) -> str:
    return next(line for line in lines if f" {name} drift" in line)


def test_drift_is_the_theil_sen_rise_over_the_median() -> None:
    assert drift([1, 2, 3, 4], [10, 11, 12, 13]) == 3 / 11.5
    assert drift([1, 2, 3, 4], [10, 10, 50, 10]) == 0.0  # one odd sample cannot tilt it
    assert math.isnan(drift([1, 2], [1, 2]))


def test_a_few_dozen_tasks_moving_with_requests_in_flight_are_flat() -> None:
    # the 15-minute soak's samples after warm-up: -5.8 % of ~60 tasks, a fall of 3.5 tasks
    lines = verdict(rows([80, 59, 62, 58, 61, 60, 58, 59, 60, 58, 59, 59]), 0, 0.05, 0.5, 100)
    assert check(lines, "tasks").startswith("ok"), lines


def test_a_task_leak_of_one_a_minute_fails() -> None:
    leak = [60.0 + n for n in range(12)]
    assert check(verdict(rows(leak), 0, 0.05, 0.5, 100), "tasks").startswith("FAIL")


def test_many_tasks_growing_by_more_than_five_percent_fail() -> None:
    grow = [1000.0 + 10 * n for n in range(12)]
    assert check(verdict(rows(grow), 0, 0.05, 0.5, 100), "tasks").startswith("FAIL")


def test_rss_has_no_floor() -> None:
    lines = verdict(rows([60.0] * 12, [100.0 + n for n in range(12)]), 0, 0.05, 0.5, 100)
    assert check(lines, "rss_mib").startswith("FAIL")
