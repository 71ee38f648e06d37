"""The one exception type users see: its message is a complete, one-line explanation."""


class BrickworkError(Exception):
    """Bad input or an unusable environment. The CLI prints the message and exits non-zero."""


def check_choice(value: object, choices: tuple, what: str) -> None:
    """Refuse a ``value`` outside ``choices``, naming them: "{what} must be one of ..."."""
    if value not in choices:
        raise BrickworkError(f"{what} must be one of {choices}, not {value!r}")
