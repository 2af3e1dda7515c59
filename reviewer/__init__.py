"""reviewer: a patch-review assistant for QEMU migration threading changes."""

__version__ = "0.1.0"
