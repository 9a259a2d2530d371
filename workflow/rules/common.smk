# Paths and helpers shared by every rule. One dataset per run: params.yaml `dataset`.
import glob
import os

import yaml

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
RESULTS = f"results/{DATASET}"
LOGS = f"logs/{DATASET}"

# Per-image stages use a process pool of this size; Snakemake lowers it to --cores when fewer.
PER_IMAGE_THREADS = 8


def code(*paths):
    """Source files a rule depends on, so that editing them reruns the rule (a folder means its *.py)."""
    files = []
    for path in paths:
        files += sorted(glob.glob(f"{path}/*.py")) if os.path.isdir(path) else [path]
    return files
