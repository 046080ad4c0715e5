"""Errors a user can act on. The CLI prints them as one line, without a traceback."""


class KdpError(Exception):
    """Base of every error kdp reports to its user."""


class CaptureError(KdpError):
    """A capture file that cannot be read or written (bad magic, damage, I/O)."""


class ConfigError(KdpError):
    """A cluster snapshot that fails validation: names the file, the object and the field."""
