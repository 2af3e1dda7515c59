"""Errors that end a command with exit code 2 and one line for the user."""


class UserError(Exception):
    """Bad input or environment: the message says what to do; no traceback."""
