"""`python -m deploy.local`: run the whole topology in the foreground until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType

from deploy.local.topology import MissingTool, Topology


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.local", description=__doc__)
    parser.add_argument("--dir", type=Path, help="where everything goes (default: a new temp dir)")
    parser.add_argument("--gateways", type=int, default=3, help="gateway run processes (3)")
    parser.add_argument("--workers", type=int, default=2, help="gateway worker processes (2)")
    options = parser.parse_args()
    directory = options.dir or Path(tempfile.mkdtemp(prefix="gateway-local-"))
    topology = Topology(directory, gateways=options.gateways, workers=options.workers)

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        topology.start()
    except MissingTool as error:
        print(f"deploy.local: {error}", file=sys.stderr)
        return 2
    print(summary(topology), flush=True)
    try:
        assert topology.supervisord is not None
        topology.supervisord.wait()
    except KeyboardInterrupt:
        print("deploy.local: stopping", flush=True)
    finally:
        topology.stop()
    return 0


def summary(topology: Topology) -> str:
    env = topology.environment()
    lines = [
        f"deploy.local: up in {topology.directory}",
        f"  https (nginx)      {topology.url}/  (certificate {topology.certificate})",
        f"  WebSocket feed     wss://127.0.0.1:{topology.https_port}/ws/readings/",
        f"  Twilio webhook     {topology.url}/sms/twilio/  (auth token {env['TWILIO_AUTH_TOKEN']})",
        f"  MQTT (Mosquitto)   mqtt://127.0.0.1:{topology.mqtt_port}  "
        "(device sensor-1, password local-device-password, topic devices/sensor-1/readings)",
        f"  Redis              {env['REDIS_URL']}",
        f"  PostgreSQL         {topology.database_url}",
    ]
    lines += [
        f"  {g.name:<18} http://127.0.0.1:{g.http_port}  smtp 127.0.0.1:{g.smtp_port}"
        for g in topology.processes
    ]
    lines += [
        f"  workers            {', '.join(topology.worker_names)}",
        f"  logs               {topology.logs}/",
        f"  control            {sys.executable} -m supervisor.supervisorctl "
        f"-c {topology.path('supervisord.conf')} status",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
