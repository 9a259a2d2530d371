"""The results tables, each beside the paper's numbers (pandas → CSV + Markdown + an HTML page that the
Snakemake report shows inline).

* ``localisation_table``: CAM baseline, IS-CAM without GSC and SIPE on the train split (paper Tab. 4);
* ``refinement_table``: IS-CAM → +dCRF → IR labels → IRN pseudo labels on the train split;
* ``summary_table``: the pipeline's rows side by side, localisation maps to DeepLabV2 on val (paper
  Tab. 1–3). Missing inputs leave their row out; for VOC and COCO the reported numbers stand beside
  ours with their source, and where the reference reports none the note says what is known.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from sipe.errors import SipeError
from sipe.io import atomic_path, write_text
from sipe.viz import write_html_table

# Paper Tab. 4 (VOC train, localisation maps, mIoU %): CAM 50.1, IS-CAM w/o GSC 53.2, SIPE 58.6.
PAPER_TAB4_VOC = {("cam", "nogsc"): 50.1, ("is_cam", "nogsc"): 53.2, ("is_cam", "sipe"): 58.6}
# Paper (VOC train, mIoU %): IS-CAM 58.6 (Tab. 4), +denseCRF 64.7 (section 4.2; docs/method.md E). The IRN
# pseudo labels (~68, a user's reproduction, docs/method.md E) and the IR-label statistics have no paper value.
PAPER_REFINE_VOC = {"is_cam": 58.6, "crf": 64.7}

LOCALISATION_ROWS = (  # (map, variant, label)
    ("cam", "nogsc", "CAM baseline (best background threshold)"),
    ("is_cam", "nogsc", "IS-CAM without GSC"),
    ("is_cam", "sipe", "SIPE: IS-CAM with GSC"),
    ("cam", "sipe", "CAM of the GSC-trained model (best background threshold)"),
)


# What the HTML page of each table says under it (``DataFrame.attrs["note"]``, set by the functions below).
LOCALISATION_NOTE = (
    "mIoU in % on the train split. paper_voc_mIoU: the paper's Tab. 4 (PASCAL VOC 2012 train: CAM "
    f"{PAPER_TAB4_VOC[('cam', 'nogsc')]}, IS-CAM without GSC {PAPER_TAB4_VOC[('is_cam', 'nogsc')]}, SIPE "
    f"{PAPER_TAB4_VOC[('is_cam', 'sipe')]}); \u2014 where it gives none: the CAM of the GSC-trained model, and "
    "every row for any dataset other than VOC.")
REFINEMENT_NOTE = (
    "mIoU, coverage and precision in % on the train split. paper_voc_mIoU: the paper's VOC train numbers (IS-CAM "
    f"{PAPER_REFINE_VOC['is_cam']}, + denseCRF {PAPER_REFINE_VOC['crf']}); \u2014 where it gives none: the IR "
    "labels, the random-walk pseudo labels (about 68 in a user's reproduction), and every row for any dataset "
    "other than VOC.")


def read_summary(path: Path) -> dict:
    """An evaluation ``summary.json``; an unreadable one is a one-line error naming it."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SipeError(f"{path}: cannot read evaluation summary ({exc})") from None


def localisation_table(summaries: list[Path], dataset: str) -> pd.DataFrame:
    """Tab. 4 layout from ``<results>/<variant>/eval_cams/summary.json`` files (variant = folder name)."""
    by_variant = {Path(p).parent.parent.name: read_summary(Path(p)) for p in summaries}
    rows = []
    for kind, variant, label in LOCALISATION_ROWS:
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
    return _noted(pd.DataFrame(rows), LOCALISATION_NOTE)


def write_table(table: pd.DataFrame, csv_path: Path, title: str) -> None:
    """Write ``table`` as CSV and, next to it with the same stem, as a Markdown file and as a self-contained
    HTML page with the note of ``table.attrs["note"]`` under it (:func:`sipe.viz.html_table`; the Snakemake
    report shows it inline)."""
    csv_path = Path(csv_path)
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp, index=False)
    shown = table.astype(object).where(table.notna(), None)  # NaN cells print as "—"
    markdown = shown.to_markdown(index=False, floatfmt=".2f", missingval="—")
    write_text(csv_path.with_suffix(".md"), f"# {title}\n\n{markdown}\n")
    write_html_table(csv_path.with_suffix(".html"), table, title, table.attrs.get("note", ""))


def _noted(table: pd.DataFrame, note: str) -> pd.DataFrame:
    """``table`` with ``note`` in its ``attrs``: the line the HTML page shows under it."""
    table.attrs["note"] = note
    return table


def _percent(value) -> float | None:
    return None if value is None else round(100 * float(value), 2)


def refinement_table(cams_summary: Path, crf_summary: Path, ir_summary: Path, pseudo_summary: Path | None,
                     dataset: str) -> pd.DataFrame:
    """IS-CAM → +dCRF → IR labels → IRN pseudo labels, train-split mIoU in % side by side, with the paper's
    VOC values; the IR-label row adds coverage and the confident pixels' precision (also in %)."""
    cams, crf, ir = read_summary(cams_summary), read_summary(crf_summary), read_summary(ir_summary)
    voc = dataset == "voc"
    rows = [
        {"labels": "IS-CAM: keys[argmax]", "mIoU": _percent(cams["is_cam_mIoU"]), "coverage": 100.0,
         "paper_voc_mIoU": PAPER_REFINE_VOC["is_cam"] if voc else None},
        {"labels": "+ denseCRF (uncertain = background)", "mIoU": _percent(crf["mIoU"]), "coverage": 100.0,
         "paper_voc_mIoU": PAPER_REFINE_VOC["crf"] if voc else None},
        {"labels": "IR labels: confident pixels only", "mIoU": _percent(ir["confident_mIoU"]),
         "coverage": _percent(ir["coverage"]), "fg_precision": _percent(ir["fg_precision"]),
         "bg_precision": _percent(ir["bg_precision"])},
    ]
    if pseudo_summary is not None:
        rows.append({"labels": "IRN random-walk pseudo labels", "mIoU": _percent(read_summary(pseudo_summary)["mIoU"]),
                     "coverage": 100.0})
    columns = ["labels", "mIoU", "coverage", "fg_precision", "bg_precision", "paper_voc_mIoU"]
    return _noted(pd.DataFrame(rows, columns=columns), REFINEMENT_NOTE)


# (row key, label, split, key in the summary JSON)
SUMMARY_ROWS = (
    ("localisation", "Localisation maps (IS-CAM)", "train", "is_cam_mIoU"),
    ("crf", "+ denseCRF", "train", "mIoU"),
    ("pseudo", "Pseudo labels (DeepLab's training labels)", "train", "mIoU"),
    ("deeplab", "DeepLabV2, MSC", "val", "mIoU"),
    ("deeplab_crf", "DeepLabV2, MSC + denseCRF", "val", "mIoU"),
)

# Reported numbers (mIoU %) and where they come from (the paper's Tab. 1-3; docs/method.md D, E, G.5).
PAPER_SUMMARY = {
    "voc": {
        "localisation": (PAPER_TAB4_VOC[("is_cam", "sipe")], "paper Tab. 1 / Tab. 4"),
        "crf": (PAPER_REFINE_VOC["crf"], "paper Tab. 1; IR-label fg map, pred 255 = background (author, issue #8)"),
        "pseudo": (None, "not in the paper; about 68 reproduced by a user (issue #6)"),
        "deeplab": (None, "not reported separately"),
        "deeplab_crf": (68.8, "paper Tab. 2, ResNet-101 (test 69.7); CRF and MSC not stated"),
    },
    "coco": {
        "localisation": (None, "not in the paper; 34.4 / 35.1 in the authors' logs"),
        "crf": (None, "not reported"),
        "pseudo": (None, "not reported (COCO pseudo labels are the IR labels)"),
        "deeplab": (None, "not reported separately"),
        "deeplab_crf": (40.6, "paper Tab. 3, ResNet-101; CRF and MSC not stated"),
    },
}


def _reported(dataset: str) -> str:
    """The paper's numbers of one dataset as text: 'IS-CAM 58.6, ...' (rows it reports only)."""
    labels = {key: label for key, label, *_ in SUMMARY_ROWS}
    return ", ".join(f"{labels[key]} {value}" for key, (value, _) in PAPER_SUMMARY[dataset].items()
                     if value is not None)


SUMMARY_NOTE = ("mIoU in %. paper_mIoU: the paper's number for this dataset and row, paper_note: where it comes "
                "from; \u2014 where the paper reports none. The paper reports VOC (" + _reported("voc") + ") and COCO ("
                + _reported("coco") + "); for any other dataset, e.g. the synthetic one, the table has no paper "
                "columns.")


def summary_table(summaries: dict[str, Path | None], dataset: str) -> pd.DataFrame:
    """One row per ``SUMMARY_ROWS`` entry whose summary file is given (``summaries[row key]``): method, split and
    our mIoU in %; for VOC and COCO also ``paper_mIoU`` and ``paper_note``."""
    unknown = sorted(set(summaries) - {key for key, *_ in SUMMARY_ROWS})
    if unknown:
        raise ValueError(f"unknown summary rows: {', '.join(unknown)}")
    paper = PAPER_SUMMARY.get(dataset)
    rows = []
    for key, label, split, field in SUMMARY_ROWS:
        path = summaries.get(key)
        if path is None:
            continue
        value = read_summary(Path(path)).get(field)
        row = {"method": label, "split": split, "mIoU": None if value is None else round(100 * value, 2)}
        if paper is not None:
            row["paper_mIoU"], row["paper_note"] = paper[key]
        rows.append(row)
    return _noted(pd.DataFrame(rows), SUMMARY_NOTE)
