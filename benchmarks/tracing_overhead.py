"""Tracing overhead: MQTT intake messages/s with OpenTelemetry absent, idle, and exporting.

Run from the project root:  .venv/bin/python -m benchmarks.tracing_overhead [--messages 50000]

The `gateway-external` receiver of benchmarks/mqtt_intake.py (our gateway on a Mosquitto
started for the run, an `AsyncMqttConsumer` that counts, the same raw-socket publisher over
100 topics), one process per measurement, in three modes:

- absent: ``opentelemetry`` cannot be imported (as without the ``otel`` extra): the pipeline
  and the consumer skip tracing on one None check;
- api: the extra installed, no tracer provider configured (spans are the API's no-op spans);
- memory: the SDK's `TracerProvider` with a `SimpleSpanProcessor` into the SDK's
  `InMemorySpanExporter`: two recorded spans per message (the event and the consumer call).

Modes are interleaved per round; the median of --rounds is reported, with each mode's ratio to
"absent".
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks import mqtt_intake as harness

MODES = ("absent", "api", "memory")


def receive(mode: str, port: int, qos: int, expected: int) -> None:
    """Set up tracing as `mode` says, then run the gateway receiver until it has `expected`."""
    if mode == "absent":
        sys.modules["opentelemetry"] = None  # type: ignore[assignment]  # import raises
    elif mode == "memory":
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
        trace.set_tracer_provider(provider)
    harness.receive("gateway-external", port, qos, expected)


def measure(mode: str, broker_port: int, qos: int, count: int) -> float:
    command = [sys.executable, "-m", "benchmarks.tracing_overhead", "--role", "receive"]
    command += ["--mode", mode, "--port", str(broker_port), "--qos", str(qos)]
    command += ["--messages", str(count)]
    proc = subprocess.Popen(
        command, cwd=harness.ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert proc.stdout is not None
        port = next(int(line.split()[2]) for line in proc.stdout if line.startswith("BENCH ready"))
        asyncio.run(harness.publish(port, qos, count))
        for line in proc.stdout:
            if line.startswith("BENCH result"):
                _, _, received, seconds = line.split()
                return (int(received) - 1) / float(seconds)
        raise RuntimeError(f"{mode} gave no result")
    finally:
        proc.kill()
        proc.wait()


def drive(args: argparse.Namespace, port: int) -> None:
    print(f"{args.messages:,} messages, median of {args.rounds} rounds")
    for qos in args.qos:
        samples: dict[str, list[float]] = {mode: [] for mode in MODES}
        for _ in range(args.rounds):
            for mode in MODES:
                samples[mode].append(measure(mode, port, qos, args.messages))
        rates = {mode: statistics.median(values) for mode, values in samples.items()}
        print(f"\nQoS {qos}:")
        for mode, rate in rates.items():
            spread = f"{min(samples[mode]):,.0f}-{max(samples[mode]):,.0f}"
            ratio = rate / rates["absent"]
            print(f"  {mode:7} {rate:>10,.0f} msgs/s  {ratio:.3f}x  (range {spread})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--qos", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--role", choices=["drive", "receive"], default="drive")
    parser.add_argument("--mode", choices=MODES)
    parser.add_argument("--port", type=int)
    args = parser.parse_args()
    if args.role == "receive":
        receive(args.mode, args.port, args.qos[0], args.messages)
        return
    with tempfile.TemporaryDirectory(prefix="bench-mosquitto-") as directory:
        broker, port = harness.start_mosquitto(Path(directory))
        try:
            drive(args, port)
        finally:
            broker.terminate()
            broker.wait()


if __name__ == "__main__":
    main()
