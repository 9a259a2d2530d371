"""Loading and checking ``params.yaml`` against ``workflow/schemas/params.schema.yaml``.

The same JSON schema is enforced by the Snakefile (``snakemake.utils.validate``) and here, for
every ``sipe`` command, so a bad setting stops either entry point with one line naming the key.
"""

from __future__ import annotations

import math
import os
from functools import cache
from pathlib import Path

import jsonschema
import yaml

from sipe.errors import ConfigError
from sipe.io import read_yaml, yaml_loader

SCHEMA_PATH = Path(__file__).with_name("params.schema.yaml")


@cache
def _schema() -> dict:
    return yaml.load(SCHEMA_PATH.read_text(), Loader=yaml_loader())  # a SafeLoader subclass


def _key(path) -> str:
    return ".".join(str(p) for p in path)


def non_finite(value, path: tuple = ()) -> tuple[tuple, float] | None:
    """(key path, value) of the first NaN or infinite float in ``value`` (nested dicts and lists), else ``None``."""
    if isinstance(value, float) and not math.isfinite(value):
        return path, value
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = non_finite(item, (*path, key))
        if found is not None:
            return found
    return None


def validate_params(params: dict, source: str = "params.yaml") -> dict:
    """Check ``params`` against the schema and the cross-field rules; raise :class:`ConfigError`.

    NaN and infinities are refused everywhere (the schema's ``finite`` rule does the same for Snakemake,
    with a less readable message)."""
    found = non_finite(params)
    if found is not None:
        path, value = found
        raise ConfigError(f"{source}: {_key(path)}: {value} is not a finite number")
    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(params), key=lambda e: (len(e.path), list(map(str, e.path))))
    if errors:
        error = errors[0]
        if error.validator == "additionalProperties":
            known = set(error.schema.get("properties", {}))
            unknown = sorted(set(error.instance) - known)
            raise ConfigError(f"{source}: unknown key '{_key([*error.path, unknown[0]])}'")
        where = f" {_key(error.path)}:" if error.path else ""
        raise ConfigError(f"{source}:{where} {error.message}")
    syn = params["synthetic"]
    if syn["train"] > syn["train_aug"]:
        raise ConfigError(f"{source}: synthetic.train: {syn['train']} exceeds synthetic.train_aug ({syn['train_aug']})")
    if syn["min_side"] > syn["max_side"]:
        raise ConfigError(f"{source}: synthetic.min_side: {syn['min_side']} exceeds synthetic.max_side ({syn['max_side']})")
    low, high = params["sipe"]["resize_long"]
    if low > high:
        raise ConfigError(f"{source}: sipe.resize_long: {low} exceeds {high}")
    return params


def load_params(path: str | os.PathLike = "params.yaml") -> dict:
    """Read and validate a params file: UTF-8 YAML without duplicate keys (:func:`sipe.io.read_yaml`).

    Other :class:`OSError` (unreadable, a folder) propagate: ``sipe`` reports them as one line."""
    path = Path(path)
    try:
        params = read_yaml(path, "params file", ConfigError)
    except FileNotFoundError:
        raise ConfigError(f"{path}: params file not found") from None
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: must be a mapping of settings, got {type(params).__name__}")
    return validate_params(params, str(path))
