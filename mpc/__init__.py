"""Secure multi-party computation job runner for health data exchange."""

__version__ = "0.1.0"
