"""The one exception type users see: the CLI prints its message and exits with code 2."""


class AdarecError(Exception):
    """A user-facing error (bad input, bad configuration, missing data).

    The message must say what is wrong and, where it can, what to do about it.
    """
