"""The soak's verdict (drift of each series after warm-up) and its plot (`benchmarks/soak.py`)."""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from pathlib import Path

from benchmarks.soak_load import PROTOCOLS

Row = dict[str, float]

#: Tasks are flat when their line rises (or falls) by at most 5 % of their median or by at most
#: this many tasks. Idle MQTT connections hold no task, so the count is a few dozen, most of
#: them the operations in flight when /-/metrics is scraped: 5 % of 60 is three requests. A
#: leak of one task a minute still rises past it within ten minutes.
TASKS_FLOOR = 8.0


def rise(times: Sequence[float], values: Sequence[float]) -> float:
    """The Theil-Sen line's rise from the first to the last time, in the values' unit.

    The slope is the median of the slopes between every two points (one odd sample, a pause
    of the shared host, cannot tilt it); NaN values (an interval without an operation of that
    kind) are left out. NaN when fewer than three values are left.
    """
    points = _points(times, values)
    if len(points) < 3:
        return math.nan
    slopes = [
        (v2 - v1) / (t2 - t1)
        for (t1, v1), (t2, v2) in itertools.combinations(points, 2)
        if t2 != t1
    ]
    return statistics.median(slopes) * (points[-1][0] - points[0][0])


def drift(times: Sequence[float], values: Sequence[float]) -> float:
    """`rise` relative to the values' median; NaN when that is 0 or `rise` is NaN."""
    points = _points(times, values)
    middle = statistics.median(v for _, v in points) if len(points) >= 3 else 0.0
    return math.nan if middle == 0 else rise(times, values) / middle


def _points(times: Sequence[float], values: Sequence[float]) -> list[tuple[float, float]]:
    return [(t, v) for t, v in zip(times, values, strict=True) if not math.isnan(v)]


def verdict(
    rows: Sequence[Row],
    warmup: float,
    max_drift: float,
    max_latency_drift: float,
    readings: float,
) -> list[str]:
    """One line per check, "ok" or "FAIL" first; the checks are documented in soak.py."""
    kept = [row for row in rows if row["elapsed_s"] > warmup]
    times = [row["elapsed_s"] for row in kept]
    lines = []
    for name, floor in (("rss_mib", 0.0), ("tasks", TASKS_FLOOR)):
        series = [row[name] for row in kept]
        value, risen = drift(times, series), rise(times, series)
        passed = abs(value) <= max_drift or abs(risen) <= floor
        bound = f"|drift| <= {max_drift:.0%}" + (f" or |rise| <= {floor:g}" if floor else "")
        lines.append(_line(passed, f"{name} drift {value:+.1%}, rise {risen:+.1f} ({bound})"))
    for protocol in PROTOCOLS:
        value = drift(times, [row[f"{protocol}_p99_ms"] for row in kept])
        passed = value <= max_latency_drift
        lines.append(
            _line(passed, f"{protocol} p99 drift {value:+.1%} (<= {max_latency_drift:+.0%})")
        )
    seen = min((row["mqtt_n_ms"] for row in kept), default=0.0)
    lines.append(
        _line(seen >= readings / 2, f"at least {seen:g} readings a sample (sent {readings:g})")
    )
    errors = int(rows[-1]["errors"]) if rows else 0
    lines.append(_line(bool(kept) and errors == 0, f"{errors} errors, {len(kept)} samples kept"))
    return lines


def _line(passed: bool, text: str) -> str:
    return f"{'ok  ' if passed else 'FAIL'} {text}"


def plot(rows: Sequence[Row], warmup: float, title: str, path: Path) -> None:
    """RSS, file descriptors and tasks, and p99 per protocol, against minutes, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [row["elapsed_s"] / 60 for row in rows]
    figure, axes = plt.subplots(4, 1, figsize=(9, 11), sharex=True)
    for axis, (name, label) in zip(
        axes,
        (("rss_mib", "RSS (MiB)"), ("fds", "open fds"), ("tasks", "asyncio tasks")),
        strict=False,
    ):
        axis.plot(minutes, [row[name] for row in rows], marker=".")
        axis.set_ylabel(label)
        axis.set_ylim(bottom=0)
    for protocol in PROTOCOLS:
        axes[3].plot(
            minutes, [row[f"{protocol}_p99_ms"] for row in rows], marker=".", label=protocol
        )
    axes[3].set_ylabel("p99 latency (ms)")
    axes[3].set_yscale("log")
    axes[3].legend(fontsize="small")
    axes[3].set_xlabel("minutes")
    for axis in axes:
        axis.axvline(warmup / 60, color="grey", linestyle="--", linewidth=0.8)
        axis.grid(alpha=0.3)
    axes[0].set_title(title, fontsize="medium")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
