"""The DAG's last phase on the tiny repository copy: DeepLab outputs, the summary table and the HTML report."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import run


@pytest.mark.slow
def test_deeplab_outputs_summary_and_report(snakemake_run: Path):
    results = snakemake_run / "results/synthetic"
    for kind in ("pred", "crf"):
        assert len(list((results / f"deeplab/val/{kind}").glob("*.png"))) == 8  # every val image of the tiny set
        summary = json.loads((results / f"deeplab/eval/{kind}/summary.json").read_text())
        assert 0.0 <= summary["mIoU"] <= 1.0 and summary["num_images"] == 8
    table = pd.read_csv(results / "summary.csv")
    assert table["method"].tolist() == ["Localisation maps (IS-CAM)", "+ denseCRF",
                                        "Pseudo labels (DeepLab's training labels)", "DeepLabV2, MSC",
                                        "DeepLabV2, MSC + denseCRF"]
    deeplab = json.loads((results / "deeplab/eval/pred/summary.json").read_text())["mIoU"]
    assert table.loc[3, "mIoU"] == round(100 * deeplab, 2)  # the table shows the DAG's own numbers
    run(["snakemake", "--report", "report.html"], cwd=snakemake_run)
    page = (snakemake_run / "report.html").read_text()
    for name in ("summary.html", "predictions.png", "pseudo_labels.png", "overlays.png", "loss.png",
                 "The pipeline's results side by side"):
        assert name in page, name
    # every table is in the report as an HTML page, which the report shows inline (a CSV only as a download)
    start = re.search(r'<script id="results">\s*var results = ', page).end()
    entries = json.JSONDecoder().raw_decode(page, start)[0]
    tables = {path: entry for path, entry in entries.items() if entry["mime_type"] == "text/html"}
    assert sorted(Path(path).name for path in tables) == ["class_stats.html", "localisation.html", "per_class.html",
                                                          "per_class.html", "refinement.html", "summary.html"]
    assert not [path for path in entries if path.endswith(".csv")]
    shown = tables["results/synthetic/summary.html"]["data_uri"]
    summary_page = base64.b64decode(shown.rsplit("base64,", 1)[1]).decode()
    assert f"<td class=\"num\">{table.loc[3, 'mIoU']:.2f}</td>" in summary_page  # DeepLab's number, inline
