#!/usr/bin/env bash
# Run the test suite. Extra arguments go to pytest (e.g. `./test.sh -m "not slow"`, `./test.sh -k metrics`).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/env.sh
exec python -m pytest "$@"
