# Paths and helpers shared by every rule. One dataset per run: params.yaml `dataset`.
import sys

import yaml

# This checkout's sipe package, whatever is installed: its sources are the rules' code inputs.
sys.path.insert(0, workflow.basedir)
from sipe.errors import SipeError
from sipe.preflight import preflight
from sipe.sources import command_sources

# Every `sipe` command reads its settings from this file; Snakemake's own copy (`config`) is used
# for validation and rerun triggers only, so both must agree (no --config overrides).
PARAMS = "params.yaml"
with open(PARAMS) as params_file:
    if yaml.safe_load(params_file) != config:
        raise WorkflowError(
            "settings come from params.yaml only: edit it (or use `dvc exp run -S key=value`) "
            "instead of --config/--configfile"
        )

DATASET = config["dataset"]
DATA = f"data/{DATASET}"

# Files from outside the pipeline (raw dataset, backbone weights) are checked now, so that a dry run
# stops with the one line the first stage needing them would print (sipe/preflight.py).
try:
    preflight(config, DATA)
except SipeError as error:
    raise WorkflowError(str(error)) from None
RESULTS = f"results/{DATASET}"
LOGS = f"logs/{DATASET}"

# Per-image stages use a process pool of this size; Snakemake lowers it to --cores when fewer.
PER_IMAGE_THREADS = 8


def sipe_launcher(wildcards, resources):
    """The start of a training job's command: `python -m sipe`, or torchrun with one data-parallel process
    per GPU when the job has several (profile `set-resources`, gpu = N; sipe/distributed.py, docs/cluster.md).
    The `--` keeps torchrun from reading sipe's `--log` as an abbreviation of its own `--log-dir`."""
    gpus = int(getattr(resources, "gpu", 0) or 0)
    if gpus < 2:
        return "python -m sipe"
    return f"python -m torch.distributed.run --standalone --nproc_per_node={gpus} -m sipe --"


def sources(command):
    """Source files of the `sipe <command>` stage, computed from its module's imports (sipe/sources.py), so
    that editing a module reruns exactly the rules whose stages import it (docs/architecture.md)."""
    return command_sources(command)


def cams_role(wildcards):
    """Split a variant's maps cover: the main model's feed refinement (train_aug), the others are only scored (train)."""
    return "train_aug" if wildcards.variant == "sipe" else "train"
