"""The one exception type the CLI turns into a one-line message and exit code 2."""


class UserError(Exception):
    """Bad input from the user: a file, a name, a value. The message says what is wrong and what is allowed."""
