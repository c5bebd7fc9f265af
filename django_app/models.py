"""Models of the gateway app (devices and stored messages come here)."""
