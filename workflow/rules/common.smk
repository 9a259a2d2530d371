# Paths and helpers shared by every rule. One dataset per run: params.yaml `dataset`.
import sys

from snakemake.io import flag

# This checkout's sipe package, whatever is installed: its sources are the rules' code inputs.
sys.path.insert(0, workflow.basedir)
from sipe.data.raw import raw_folders, tree_digest
from sipe.errors import SipeError
from sipe.io import read_yaml
from sipe.preflight import preflight
from sipe.sources import command_sources

# Every `sipe` command reads its settings from this file; Snakemake's own copy (`config`) is used
# for validation and rerun triggers only, so both must agree (no --config overrides).
PARAMS = "params.yaml"
try:
    PARAMS_READ = read_yaml(PARAMS, "settings file")  # refuses what Snakemake's loader lets pass: duplicate keys
except SipeError as error:
    raise WorkflowError(str(error)) from None
if PARAMS_READ != config:
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
# The raw dataset's folders (VOC + SBD, COCO; none for the synthetic data) are inputs of preparation.
RAW_FOLDERS = raw_folders(config)
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


def record_run_in_dvc(workflow):
    """onsuccess: a run that covered the whole DAG (no target but `all`, no --until, --omit-from, --allowed-rules
    or --batch) is recorded in dvc.lock without touching a file (`sipe sync --after-run`, sipe/state.py)."""
    dag = workflow.dag_settings
    if set(dag.targets) - {"all"} or dag.target_jobs or dag.until or dag.omit_from or dag.allowed_rules or dag.batch:
        logger.info("sipe: a partial run is not recorded in dvc.lock (run the whole DAG, or `dvc commit <stage>`)")
        return
    shell("python -m sipe sync --after-run")


def settings(*keys):
    """The params.yaml entries (dotted keys, e.g. "sipe.crop") that a rule's command reads, given to the rule as
    params: Snakemake reruns the rule when one changes, and `sipe dvc-yaml` lists the keys as DVC params."""
    values = {}
    for key in keys:
        value = config
        for part in key.split("."):
            value = value[part]
        values[key] = value
    return values


def metrics(path):
    """Mark an output as one of DVC's metrics files (`dvc metrics show`, `dvc exp show`; sipe/dvc_stages.py)."""
    return flag(path, "dvc", "metrics")


def plot(path, x, y, title):
    """Mark a CSV output as one of DVC's plots (`dvc plots show`): column ``y`` against column ``x``, under
    ``title`` (its {wildcards} filled in per job)."""
    return flag(path, "dvc", {"x": x, "y": y, "title": title})


def cams_role(wildcards):
    """Split a variant's maps cover: the main model's feed refinement (train_aug), the others are only scored (train)."""
    return "train_aug" if wildcards.variant == "sipe" else "train"
