"""A device in its own process, for SIGKILL tests: ``python -m tests.mqtt.paho_device PORT ID``.

It connects with MQTT 5, a retained last will ``offline`` on ``devices/<id>/status``,
publishes the retained birth message ``online`` there, prints ``ready`` and waits forever.
"""

from __future__ import annotations

import sys
import threading

import paho.mqtt.client as paho


def main(port: int, device_id: str) -> None:
    status = f"devices/{device_id}/status"
    client = paho.Client(
        paho.CallbackAPIVersion.VERSION2, client_id=device_id, protocol=paho.MQTTv5
    )
    client.will_set(status, "offline", qos=1, retain=True)
    client.connect("127.0.0.1", port, keepalive=60)
    client.loop_start()
    client.publish(status, "online", qos=1, retain=True).wait_for_publish(20)
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
