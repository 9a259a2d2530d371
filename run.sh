#!/usr/bin/env bash
# Run the whole pipeline (Snakemake, profile workflow/profiles/default) on the dataset that
# params.yaml names: the embedded synthetic dataset by default. Extra arguments go to snakemake.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/env.sh
# One state with DVC (docs/architecture.md, "One state, two tools"): dvc.yaml follows params.yaml, and what
# dvc.lock vouches for (after `dvc exp run`, `dvc exp apply`, `dvc checkout`) is current for Snakemake too.
python -m sipe sync || echo "run.sh: sipe sync failed (above); Snakemake decides what to run on its own" >&2
exec snakemake --workflow-profile workflow/profiles/default "$@"
