"""Errors that the command-line tool reports as one line and a non-zero exit code."""


class SipeError(Exception):
    """A user-facing error: the message names the file or key and what is wrong with it."""


class ConfigError(SipeError):
    """``params.yaml`` (or a flag) holds an unknown key, a wrong type or an out-of-range value."""


class DatasetError(SipeError):
    """A dataset on disk is missing files or holds invalid ids, masks or labels."""


def first_offenders(items, limit: int = 5) -> str:
    """Format the first ``limit`` offending entries of a list for a one-line error message."""
    items = list(items)
    shown = ", ".join(str(x) for x in items[:limit])
    more = f" (and {len(items) - limit} more)" if len(items) > limit else ""
    return shown + more
