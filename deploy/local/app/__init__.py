"""The local topology's own small app: readings over MQTT, a live WebSocket feed, SMS and mail."""
