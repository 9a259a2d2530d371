"""``sipe compare``: DVC experiments side by side in the layout of the paper's tables.

Reads the experiments DVC knows (``dvc.api.exp_show``: the workspace, the baseline commit and every
experiment run from it) and prints, for the chosen ones, the headline metrics that
``sipe headline-metrics`` writes (sipe/stages/ledger.py) grouped as the paper's Tab. 1-5, then the
settings whose values differ between them (docs/reproducing.md, "Comparing experiments").
"""

from __future__ import annotations

import json

import pandas as pd

from sipe.errors import SipeError

# (table title, [(row label, metric key in metrics.json)]), in the paper's order.
TABLES = (
    ("Tab. 1 - localisation maps, train mIoU", [
        ("SIPE (IS-CAM)", "localisation.sipe"), ("+ denseCRF", "refinement.crf")]),
    ("Tab. 2-3 - pseudo labels (train) and DeepLabV2 (val), mIoU", [
        ("IR labels, confident pixels", "refinement.ir_labels"),
        ("pseudo labels (DeepLab's training labels)", "refinement.pseudo_labels"),
        ("DeepLabV2, MSC (val)", "segmentation.val"), ("DeepLabV2, MSC + denseCRF (val)", "segmentation.val_crf")]),
    ("Tab. 4 - IPE and GSC, train mIoU", [
        ("CAM baseline", "localisation.cam"), ("+ IPE: IS-CAM without GSC", "localisation.is_cam_nogsc"),
        ("+ GSC: CAM of the GSC-trained model", "localisation.cam_gsc"),
        ("+ IPE + GSC: SIPE", "localisation.sipe")]),
    ("Tab. 5 - prototype modelling, train mIoU", [
        ("IS-CAM (estimated background)", "localisation.sipe"),
        ("CAM at its best threshold (threshold-based)", "localisation.cam_gsc")]),
    ("Final training loss", [
        (name, f"final_loss.{name}") for name in ("pretrain", "sipe", "nogsc", "irn", "deeplab")]),
)
# The settings that tell Tab. 5's rows apart; shown under it whether they differ or not.
TAB5_SETTINGS = ("sipe.prototype_feature", "sipe.background_prototype")
SECTIONS = ("localisation.", "refinement.", "segmentation.", "final_loss.")
NAME_COLUMNS = ("Experiment", "rev", "typ", "Created", "parent", "State", "Executor")


def _metric_key(column: str) -> str | None:
    """``results/voc/metrics.json:localisation.cam`` or ``localisation.cam`` → ``localisation.cam``."""
    key = column.rsplit(":", 1)[-1]
    return key if key.startswith(SECTIONS) else None


def experiment_rows(repo: str = ".") -> list[dict]:
    """DVC's experiment rows (``dvc.api.exp_show``) with a ``name`` for each: workspace, the baseline's short
    rev, or the experiment's name."""
    import dvc.api

    try:
        rows = dvc.api.exp_show(repo=repo)
    except Exception as exc:  # DVC raises its own error types; the message is the useful part
        raise SipeError(f"dvc exp show: {exc}") from None
    for row in rows:
        row["name"] = row.get("Experiment") or row.get("rev") or "?"
        for key, value in row.items():
            if value == "!":  # DVC's mark for a value it could not read (e.g. a commit without results)
                row[key] = None
    return rows


def _pick(rows: list[dict], names: list[str]) -> list[dict]:
    if not names:
        return [row for row in rows if row.get("State") in (None, "Success", "Applied") or row["name"] == "workspace"]
    by_name = {row["name"]: row for row in rows} | {row.get("rev"): row for row in rows}
    missing = [name for name in names if name not in by_name]
    if missing:
        known = ", ".join(row["name"] for row in rows)
        raise SipeError(f"no experiment named {missing[0]!r} (known: {known})")
    return [by_name[name] for name in names]


def _value(value):
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def compare_tables(rows: list[dict]) -> list[tuple[str, pd.DataFrame]]:
    """The paper-layout tables for ``rows`` (one column per experiment) and the table of settings that differ."""
    if not rows:
        raise SipeError("no experiments to compare: run `dvc exp run` first")
    columns = [row["name"] for row in rows]
    metrics = [{_metric_key(k): v for k, v in row.items() if _metric_key(k)} for row in rows]
    tables = []
    for title, entries in TABLES:
        data = [[label, *[m.get(key) for m in metrics]] for label, key in entries
                if any(m.get(key) is not None for m in metrics)]
        if title.startswith("Tab. 5"):
            data += [[key, *[_value(row.get(key)) for row in rows]] for key in TAB5_SETTINGS]
        if data:
            tables.append((title, pd.DataFrame(data, columns=["", *columns])))
    # params.yaml keys; DVC's rows also hold each dep's hash under its path, which has a "/" in it
    settings = sorted({k for row in rows for k in row
                       if k not in NAME_COLUMNS and k != "name" and "/" not in k and not _metric_key(k)})
    differing = [[key, *[_value(row.get(key)) for row in rows]] for key in settings
                 if len({json.dumps(row.get(key), sort_keys=True) for row in rows}) > 1]
    tables.append(("Settings that differ", pd.DataFrame(differing, columns=["", *columns])))
    return tables


def compare(names: list[str], markdown: bool = False, repo: str = ".") -> str:
    """The ``sipe compare`` command's text: :func:`compare_tables` for the named experiments (default: the
    workspace, the baseline and every successful experiment)."""
    parts = []
    for title, table in compare_tables(_pick(experiment_rows(repo), names)):
        digits = 4 if "loss" in title else 2  # mIoU in % to 0.01; losses to 1e-4
        if table.empty:
            body = "(none)"
        elif markdown:
            body = table.astype(object).where(table.notna(), None).to_markdown(
                index=False, floatfmt=f".{digits}f", missingval="-")
        else:
            body = table.to_string(index=False, na_rep="-", float_format=lambda v: f"{v:.{digits}f}")
        parts.append(f"{'## ' if markdown else ''}{title}\n\n{body}")
    return "\n\n".join(parts) + "\n"
