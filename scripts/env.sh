#!/usr/bin/env bash
# Source this file (`source scripts/env.sh`): it creates .venv with the locked dependencies when
# missing or out of date (requirements.lock or pyproject.toml changed), then puts .venv/bin first
# on PATH. It leaves the shell's options and working directory as they were.

_sipe_env() {
    local root python_bin stamp
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)" || return 1
    python_bin="${SIPE_PYTHON:-$(command -v python3.11 || command -v python3)}"
    if ! "$python_bin" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
        echo "sipe-pipeline needs Python 3.11; '$python_bin' is not. Set SIPE_PYTHON to a Python 3.11 interpreter." >&2
        return 1
    fi
    stamp="$root/.venv/.installed-$(cat "$root/requirements.lock" "$root/pyproject.toml" | sha256sum | cut -c1-16)"
    if [ ! -f "$stamp" ]; then
        echo "Installing .venv from requirements.lock (first run: a few minutes; log in .venv-install.log) ..." >&2
        if ! { "$python_bin" -m venv "$root/.venv" &&
               "$root/.venv/bin/pip" install --disable-pip-version-check -r "$root/requirements.lock" &&
               "$root/.venv/bin/pip" install --disable-pip-version-check --no-deps -e "$root"; } \
               > "$root/.venv-install.log" 2>&1; then
            tail -n 20 "$root/.venv-install.log" >&2
            echo "Installing .venv failed; the whole log is in .venv-install.log" >&2
            return 1
        fi
        rm -f "$root"/.venv/.installed-*
        touch "$stamp"
    fi
    export VIRTUAL_ENV="$root/.venv"
    export PATH="$root/.venv/bin:$PATH"
}
_sipe_env
