"""The one exception type users see: its message is a complete, one-line explanation."""


class BrickworkError(Exception):
    """Bad input or an unusable environment. The CLI prints the message and exits non-zero."""
