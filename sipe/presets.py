"""Presets: switch ``params.yaml`` between the synthetic default and the paper's VOC and COCO settings.

A preset is a small override file ``sipe/presets/<name>.yaml`` (same nesting as ``params.yaml``).
:func:`apply_preset` writes its values into a params file with a ruamel.yaml round trip, so every
other key and every comment stays as it was; ``synthetic`` holds today's defaults of every key the
others set, so it undoes them byte for byte. Paper values: docs/method.md, docs/reproducing.md.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from sipe.config import validate_params
from sipe.errors import ConfigError
from sipe.io import YAML_INDENT as INDENT
from sipe.io import round_trip_yaml, write_text

PRESETS = ("synthetic", "synthetic-large", "voc", "coco")
PRESET_DIR = Path(__file__).with_name("presets")


def _flatten(mapping, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (values kept as loaded)."""
    flat = {}
    for key, value in mapping.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def _plain(value):
    """JSON text of a loaded value: compares type and value (1 != 1.0 != true)."""
    return json.dumps(value)


def preset_values(name: str) -> dict:
    """The dotted keys and (round-trip) values of preset ``name``; ConfigError for an unknown name."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset '{name}': choose one of {', '.join(PRESETS)}")
    rt = round_trip_yaml()
    return _flatten(rt.load((PRESET_DIR / f"{name}.yaml").read_text()))


def _rendered_width(rt: YAML, key: str, value, depth: int) -> int:
    """Characters ``key: value`` takes on its line at nesting ``depth``, as ``rt`` dumps it (no comment)."""
    if isinstance(value, list):
        flow = isinstance(value, CommentedSeq) and value.fa.flow_style()
        value = CommentedSeq(list(value))
        if flow:
            value.fa.set_flow_style()
    out = io.StringIO()
    rt.dump(CommentedMap([(key, value)]), out)
    return depth * INDENT + len(out.getvalue().splitlines()[0])


def _comment_column(mapping: CommentedMap, key: str) -> int | None:
    """The column where the mapping's end-of-line comments line up: the most common one (ties: the
    smallest) among the other keys."""
    columns = Counter(item[2].column for k, item in mapping.ca.items.items()
                      if k != key and len(item) > 2 and item[2] is not None)
    return min(columns, key=lambda col: (-columns[col], col)) if columns else None


def _set(rt: YAML, mapping: CommentedMap, key: str, value, depth: int) -> None:
    """``mapping[key] = value``; a list is updated in place (flow style and comment kept), and the
    end-of-line comment is realigned with its neighbours (or pushed right of a long value)."""
    old = mapping[key]
    if isinstance(old, CommentedSeq) and isinstance(value, list):
        while len(old) > len(value):
            old.pop()
        for index, item in enumerate(value):
            if index < len(old):
                old[index] = item
            else:
                old.append(item)
    else:
        mapping[key] = value
    item = mapping.ca.items.get(key)
    if item and len(item) > 2 and item[2] is not None:
        width = _rendered_width(rt, key, mapping[key], depth)
        aligned = _comment_column(mapping, key) or item[2].column
        item[2].column = max(aligned, width + 2)


def apply_preset(name: str, params_path: Path) -> list[str]:
    """Rewrite ``params_path`` in place with preset ``name``'s values (comments and other keys kept).

    Returns the dotted keys whose value changed. The result is checked against the schema before
    it is written (atomically); an unknown name or key raises :class:`ConfigError`.
    """
    values = preset_values(name)
    params_path = Path(params_path)
    try:
        text = params_path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{params_path}: params file not found") from None
    rt = round_trip_yaml()
    data = rt.load(text)
    changed = []
    for dotted, value in values.items():
        *parents, key = dotted.split(".")
        mapping = data
        for part in parents:
            mapping = mapping.get(part) if isinstance(mapping, dict) else None
        if not isinstance(mapping, dict) or key not in mapping:
            raise ConfigError(f"{params_path}: preset '{name}' sets '{dotted}', which the file lacks")
        if _plain(mapping[key]) != _plain(value):
            _set(rt, mapping, key, value, len(parents))
            changed.append(dotted)
    if not changed:
        return []
    out = io.StringIO()
    rt.dump(data, out)
    validate_params(yaml.safe_load(out.getvalue()), f"{params_path} with preset '{name}'")
    write_text(params_path, out.getvalue())
    return changed
