"""edge-agent: Modbus meters and inverters to durable msgpack batches over MQTT."""

# The one version string: the package metadata reads it (pyproject.toml, `dynamic`), `edge-agent
# --version` prints it and the retained status message carries it (tests/unit/test_version.py).
__version__ = "0.2.0"
__all__ = ["__version__"]
