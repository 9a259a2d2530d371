#!/usr/bin/env bash
# Source this file (`source scripts/env.sh`): it creates the virtual environment (.venv, or the
# folder SIPE_VENV names) with the locked dependencies when missing or out of date (its lock file,
# pyproject.toml or the checkout's path changed), then puts its bin/ first on PATH. It leaves the
# shell's options and working directory as they were.
#
# Python 3.11 to 3.13, one lock per version: requirements.lock (3.11), requirements/py3.X.lock.
# A new environment gets SIPE_PYTHON if set, else the newest supported python3.X on PATH; an
# existing one keeps the Python it was made with unless SIPE_PYTHON names another version.

_sipe_pyver() {  # prints "3.12" for a working interpreter, nothing otherwise
    "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true
}

_sipe_env() {
    local supported="3.11 3.12 3.13"
    local range="${supported%% *} to ${supported##* }"
    local root venv venv_ver py="" ver="" cand v lock stamp log action build
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)" || return 1
    venv="${SIPE_VENV:-$root/.venv}"
    case "$venv" in /*) ;; *) venv="$PWD/$venv" ;; esac
    venv_ver=""
    if [ -x "$venv/bin/python" ]; then venv_ver="$(_sipe_pyver "$venv/bin/python")"; fi

    if [ -n "${SIPE_PYTHON:-}" ]; then
        py="$SIPE_PYTHON"
        ver="$(_sipe_pyver "$py")"
        if [[ " $supported " != *" ${ver:-none} "* ]]; then
            [ -n "$ver" ] && v="Python $ver" || v="not a working Python"
            echo "sipe-pipeline needs Python $range; SIPE_PYTHON='$py' is $v." >&2
            return 1
        fi
    elif [[ -n "$venv_ver" && " $supported " == *" $venv_ver "* ]]; then
        ver="$venv_ver"  # keep the environment's Python
    else
        # The newest supported interpreter on PATH (pyenv shims of versions not selected fail the probe).
        for cand in $(printf 'python%s\n' $supported | sort -rV) python3 python; do
            v="$(_sipe_pyver "$cand")"
            if [[ " $supported " == *" ${v:-none} "* ]] && { [ -z "$ver" ] || [ "${v#3.}" -gt "${ver#3.}" ]; }; then
                py="$(command -v "$cand")" ver="$v"
            fi
        done
        if [ -z "$ver" ]; then
            v="$(_sipe_pyver python3)"
            echo "sipe-pipeline needs Python $range and found none on PATH${v:+ (python3 is Python $v)}; set SIPE_PYTHON to one." >&2
            return 1
        fi
    fi

    if [ "$ver" = 3.11 ]; then lock="$root/requirements.lock"; else lock="$root/requirements/py$ver.lock"; fi
    if [ ! -f "$lock" ]; then echo "sipe-pipeline: no lock file for Python $ver (${lock#"$root"/})." >&2; return 1; fi
    stamp="$venv/.installed-$({ cat "$lock" "$root/pyproject.toml" && echo "$root"; } | sha256sum | cut -c1-16)"
    if [ "$venv_ver" != "$ver" ] || [ ! -f "$stamp" ]; then
        if [ "$venv_ver" != "$ver" ] && [ -e "$venv" ] && [ ! -f "$venv/pyvenv.cfg" ] && [ -n "$(ls -A "$venv")" ]; then
            echo "'$venv' exists and is not a virtual environment; set SIPE_VENV to a new or virtual-environment folder." >&2
            return 1
        fi
        log="$venv-install.log"
        action="Updating $venv (Python $ver) from ${lock#"$root"/} (log in $log)"
        [ "$venv_ver" = "$ver" ] ||
            action="Installing $venv with Python $ver ($py) from ${lock#"$root"/} (a few minutes; log in $log)"
        echo "$action ..." >&2
        mkdir -p "$(dirname "$venv")" || return 1
        # A lock that pins Cython builds the sdists with it and its setuptools, in the venv itself: the
        # sdist of pydensecrf2 pins Cython 0.29.36, whose C++ does not compile on Python 3.13.
        build=""
        grep -q '^Cython==' "$lock" && build="$(grep -E '^(Cython|setuptools)==' "$lock")"
        # A venv made with another Python is cleared first (the check above keeps --clear to venvs).
        if ! { { [ "$venv_ver" = "$ver" ] || "$py" -m venv --clear "$venv"; } &&
               { [ -z "$build" ] || "$venv/bin/pip" install --disable-pip-version-check $build; } &&
               "$venv/bin/pip" install --disable-pip-version-check ${build:+--no-build-isolation} -r "$lock" &&
               "$venv/bin/pip" install --disable-pip-version-check --no-deps -e "$root"; } > "$log" 2>&1; then
            tail -n 20 "$log" >&2
            echo "Installing $venv failed; the whole log is in $log" >&2
            return 1
        fi
        rm -f "$venv"/.installed-*
        touch "$stamp"
    fi
    export VIRTUAL_ENV="$venv"
    export PATH="$venv/bin:$PATH"
}
_sipe_env
