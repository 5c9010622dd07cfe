"""The exception types the CLI turns into one line: UserError exits 2, TrainingFailed exits 1. They live here, apart
from the modules that raise them, so the CLI can catch them without importing torch."""


class UserError(Exception):
    """Bad input from the user: a file, a name, a value. The message says what is wrong and what is allowed."""


class TrainingFailed(RuntimeError):
    """The run could not go on (the loss became NaN or inf, the device ran out of memory)."""
