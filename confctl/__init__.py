"""confctl: command-line client for the confserver admin REST API."""

__version__ = "0.1.0"

__all__ = ["__version__"]
