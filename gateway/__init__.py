"""Field sensor gateway: sensors in, durable outbox, MQTT out, alerts on the spot."""

__version__ = "0.1.0"
