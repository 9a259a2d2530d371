#!/usr/bin/env bash
# Run the whole pipeline (Snakemake, profile workflow/profiles/default) on the dataset that
# params.yaml names: the embedded synthetic dataset by default. Extra arguments go to snakemake.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/env.sh
exec snakemake --workflow-profile workflow/profiles/default "$@"
