"""Errors a user can act on. The CLI prints them as one line, without a traceback."""


class KdpError(Exception):
    """Base of every error kdp reports to its user."""


class CaptureError(KdpError):
    """A capture file that cannot be read or written (bad magic, damage, I/O)."""


class ConfigError(KdpError):
    """A cluster snapshot that fails validation: names the file, the object and the field."""


class KdpWarning(UserWarning):
    """Something the user should know that does not stop kdp (the CLI prints it as one
    `kdp: warning: ...` line on stderr; library users get a Python warning)."""
