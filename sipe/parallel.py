"""Per-image work on a process pool, in order, with a progress bar: dataset preparation and validation,
and the per-image refinement stages share :func:`parallel_map`."""

from __future__ import annotations

import gc
import multiprocessing
import signal
import sys
from collections.abc import Callable, Sequence

from tqdm import tqdm


def _leave_interrupts_to_the_parent() -> None:
    """Pool worker start: Ctrl-C reaches the whole process group; the parent stops the pool and prints the
    one line (sipe/cli.py), the workers print no traceback of their own."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def parallel_map(fn: Callable, items: Sequence, workers: int = 1, desc: str | None = None) -> list:
    """``[fn(x) for x in items]``, in order, on a pool of ``workers`` processes, with a tqdm bar on stderr.

    ``fn`` must be a module-level function (it is pickled to the workers); results come back through
    ``imap`` in chunks so that a long list keeps every worker busy.
    """
    items = list(items)
    bar = dict(total=len(items), desc=desc, file=sys.stderr, mininterval=1.0, unit="file", leave=False)
    if workers <= 1 or len(items) < 2:
        return [fn(x) for x in tqdm(items, **bar)]
    workers = min(workers, len(items))
    chunksize = max(1, min(64, len(items) // (workers * 8)))
    # Forked workers share the parent's memory copy-on-write; frozen objects are skipped by their
    # garbage collector, so a large parent (a parsed COCO JSON) is not copied into every worker.
    gc.freeze()
    try:
        with multiprocessing.Pool(workers, initializer=_leave_interrupts_to_the_parent) as pool:
            return list(tqdm(pool.imap(fn, items, chunksize=chunksize), **bar))
    finally:
        gc.unfreeze()
