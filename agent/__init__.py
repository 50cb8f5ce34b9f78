"""edge-agent: Modbus meters and inverters to durable msgpack batches over MQTT."""

__version__ = "0.1.0"
__all__ = ["__version__"]
