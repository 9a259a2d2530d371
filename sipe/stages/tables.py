"""Results tables that put the pipeline's numbers beside the paper's (pandas → CSV + Markdown)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from sipe.errors import SipeError
from sipe.io import atomic_path, write_text

# Paper Tab. 4 (VOC train, localisation maps, mIoU %): CAM 50.1, IS-CAM w/o GSC 53.2, SIPE 58.6.
PAPER_TAB4_VOC = {("cam", "nogsc"): 50.1, ("is_cam", "nogsc"): 53.2, ("is_cam", "sipe"): 58.6}
ROWS = (  # (map, variant, label)
    ("cam", "nogsc", "CAM baseline (best background threshold)"),
    ("is_cam", "nogsc", "IS-CAM without GSC"),
    ("is_cam", "sipe", "SIPE: IS-CAM with GSC"),
    ("cam", "sipe", "CAM of the GSC-trained model (best background threshold)"),
)


def read_summary(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SipeError(f"{path}: cannot read evaluation summary ({exc})") from None


def localisation_table(summaries: list[Path], dataset: str) -> pd.DataFrame:
    """Tab. 4 layout from ``<results>/<variant>/eval_cams/summary.json`` files (variant = folder name)."""
    by_variant = {Path(p).parent.parent.name: read_summary(Path(p)) for p in summaries}
    rows = []
    for kind, variant, label in ROWS:
        if variant not in by_variant:
            continue
        summary = by_variant[variant]
        paper = PAPER_TAB4_VOC.get((kind, variant)) if dataset == "voc" else None
        rows.append({
            "method": label,
            "model": variant,
            "bg_threshold": summary["cam_best_threshold"] if kind == "cam" else None,
            "mIoU": round(100 * summary[f"{kind}_mIoU"], 2),
            "paper_voc_mIoU": paper,
        })
    return pd.DataFrame(rows)


def write_table(table: pd.DataFrame, csv_path: Path, title: str) -> None:
    """Write ``table`` as CSV and, next to it, as a Markdown file with the same stem."""
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp, index=False)
    shown = table.astype(object).where(table.notna(), None)  # NaN cells print as "—"
    markdown = shown.to_markdown(index=False, floatfmt=".2f", missingval="—")
    write_text(csv_path.with_suffix(".md"), f"# {title}\n\n{markdown}\n")
