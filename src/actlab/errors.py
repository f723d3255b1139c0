"""User errors: the CLI prints them as one line (no traceback) and exits with status 2."""

import re


class ActlabError(Exception):
    """Bad input from the user: a path, a key or a value that is not what was expected."""


class TrainingDiverged(ActlabError):
    """A loss that is no longer finite: the run stops with one line, and its directory (the log with that
    line, the checkpoints so far) is kept."""


def reason(error: BaseException) -> str:
    """An exception as `Type: first line of its message`, for one-line errors about files and downloads."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()  # terminal colours some libraries add
    first = text.splitlines()[0].strip() if text else "no details"
    return f"{type(error).__name__}: {first if len(first) <= 200 else first[:197] + '...'}"
