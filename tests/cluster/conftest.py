"""The real-SLURM test starts a cluster as root: it runs only when a marker expression names it (`-m slurm`)."""

from __future__ import annotations


def pytest_collection_modifyitems(config, items):
    if "slurm" in (config.option.markexpr or ""):
        return
    cluster = [item for item in items if item.get_closest_marker("slurm") is not None]
    if cluster:
        config.hook.pytest_deselected(items=cluster)
        items[:] = [item for item in items if item.get_closest_marker("slurm") is None]
