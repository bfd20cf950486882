"""Kyso signing agent: signs platform-prepared digests on the officer's USB token."""

__version__ = "0.1.0"
