"""Protocol adapters: wire events in, ASGI scopes out, one module per external protocol."""
