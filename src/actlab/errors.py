"""User errors: the CLI prints them as one line (no traceback) and exits with status 2."""


class ActlabError(Exception):
    """Bad input from the user: a path, a key or a value that is not what was expected."""
