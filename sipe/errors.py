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


def one_line(exc: BaseException, limit: int | None = None) -> str:
    """The message of ``exc`` on one line, at most ``limit`` characters (``None``: no limit).

    Usually the first non-empty line. An exception re-raised by a DataLoader worker carries torch's
    "Caught ... Original Traceback ..." text; there the original message (its last line) is kept.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    line = lines[0]
    if line.startswith("Caught ") and len(lines) > 1 and lines[1].startswith("Original Traceback"):
        prefix = f"{type(exc).__module__}.{type(exc).__qualname__}: "
        line = lines[-1].removeprefix(prefix)
    return line if limit is None or len(line) <= limit else line[:limit - 3] + "..."
