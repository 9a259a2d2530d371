"""Checks made before a run, when Snakemake builds the DAG: the files a run needs from outside the
pipeline are there. Each failure is the one line that the first stage needing the file would print
(``sipe <command>: error: ...``), so ``./run.sh -n`` stops at once instead of at that stage.

Only folders and listed files are looked at (no file is read): the raw dataset's roots when the
dataset is not prepared yet, and the backbone weights files that ``sipe.weights`` and
``deeplab.weights`` name (``imagenet`` or a path). Heavy modules are imported only when a check needs them.
"""

from __future__ import annotations

from pathlib import Path

from sipe.errors import SipeError


def _raw_voc(settings: dict) -> None:
    from sipe.data.voc import check_raw_voc

    check_raw_voc(Path(settings["root"]), Path(settings["sbd_root"]))


def _raw_coco(settings: dict) -> None:
    from sipe.data.coco import check_raw_coco

    check_raw_coco(Path(settings["root"]), settings["crowd"])


# params.yaml `dataset` → the check of its raw files (the synthetic dataset needs none).
RAW_CHECKS = {"voc": _raw_voc, "coco": _raw_coco}
# The params sections whose `weights` a training stage loads, and that stage's command.
WEIGHTS = (("sipe", "train-sipe"), ("deeplab", "train-deeplab"))


def _weights(settings: dict) -> None:
    from sipe.models.backbone import weights_file

    weights_file(settings["backbone"], settings["weights"])


def preflight(params: dict, data: Path) -> None:
    """Check what a run of ``params`` needs from outside; ``data`` is the prepared dataset's folder (its
    raw files are needed only while it has no ``dataset.json``). Raises :class:`SipeError` with the
    command's one-line message."""
    checks = []
    if params["dataset"] in RAW_CHECKS and not (Path(data) / "dataset.json").is_file():
        checks.append(("prepare-data", RAW_CHECKS[params["dataset"]], params[params["dataset"]]))
    checks += [(command, _weights, params[section]) for section, command in WEIGHTS
               if params[section]["weights"] not in ("none", "pretrain")]
    for command, check, settings in checks:
        try:
            check(settings)
        except SipeError as exc:
            raise SipeError(f"sipe {command}: error: {exc}") from None
