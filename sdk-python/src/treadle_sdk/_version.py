"""The SDK's version, sent as the manifest's ``sdkVersion``."""

__version__ = "0.1.0"
