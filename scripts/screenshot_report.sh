#!/usr/bin/env bash
# Screenshots of a Snakemake HTML report's main pages, taken with headless Chromium, to check by eye that
# a person can read the tables and pictures.
#
#   scripts/screenshot_report.sh REPORT.html OUT_DIR [WIDTH,HEIGHT]
#
# Writes into OUT_DIR: home.png (the workflow description and rule graph), category_<name>.png (the list
# of results of each category, e.g. "Results"), and per result of the report shown in the page (tables,
# pictures) two PNGs named after its path: e.g. results_synthetic_summary.html.png, the result as after a
# click on it in its category's list, and results_synthetic_summary.html.caption.png, the same with the
# side bar showing its caption. The report is a single-page app without URLs per view, so for each view
# the script writes a copy of the report with a small script that opens the view (app.setView, the
# report's own navigation) and screenshots that copy. It prints the PNGs it wrote.
#
# Needs chromium (or CHROMIUM=/path/to/chrome) and python3. Window size: 1400,1000 unless given.
# Example, on a scratch copy of the repository that ran the DAG:
#   snakemake --workflow-profile workflow/profiles/default --report report.html
#   scripts/screenshot_report.sh report.html screenshots/
set -euo pipefail

if [[ $# -lt 2 ]]; then
    echo "usage: $0 REPORT.html OUT_DIR [WIDTH,HEIGHT]" >&2
    exit 2
fi
report=$(realpath "$1")
out=$2
size=${3:-1400,1000}
chromium=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)}
if [[ -z "$chromium" ]]; then
    echo "$0: no chromium found (set CHROMIUM)" >&2
    exit 1
fi
[[ -f "$report" ]] || { echo "$0: $report: no such file" >&2; exit 1; }
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# One copy of the report per view: <name>.html in $work, listed in $work/views.txt.
python3 - "$report" "$work" <<'EOF'
import json
import re
import sys
from pathlib import Path

report, work = Path(sys.argv[1]), Path(sys.argv[2])
page = report.read_text(encoding="utf-8")


def variable(name):
    """The JSON value of ``var <name> = ...`` in the report's <script id="<name>">."""
    start = re.search(rf'<script id="{name}">\s*var {name} = ', page).end()
    return json.JSONDecoder().raw_decode(page, start)[0]


paths, categories = variable("results"), variable("categories")

views = {"home": "app.setView({navbarMode: 'menu'});"}
for category in categories:
    views[re.sub(r"[^A-Za-z0-9._-]+", "_", f"category_{category}")] = f"app.showCategory({json.dumps(category)});"
where = {path: (category, subcategory) for category, subcategories in categories.items()
         for subcategory, members in subcategories.items() for path in members}
for path, result in paths.items():
    mime = result["mime_type"]
    content = "html" if mime == "text/html" else "img" if mime.startswith("image/") else None
    if content is None:
        continue  # shown as a download link only
    category, subcategory = where.get(path, (None, None))
    show = (f"content: '{content}', resultPath: {json.dumps(path)}, "
            f"contentPath: results[{json.dumps(path)}].data_uri")
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", path)
    # as after a click on the result's eye icon in its category's list ...
    views[name] = (f"app.setView({{navbarMode: 'subcategory', category: {json.dumps(category)}, "
                   f"subcategory: {json.dumps(subcategory)}, {show}}});")
    # ... and with the side bar showing the result's caption (its "i" icon)
    views[f"{name}.caption"] = f"app.setView({{navbarMode: 'resultinfo', {show}}});"

names = []
for name, action in views.items():
    opener = f"<script>window.addEventListener('load', () => setTimeout(() => {{ {action} }}, 200));</script>"
    head, body_end, tail = page.rpartition("</body>")  # the page's own; its scripts contain the string too
    (work / f"{name}.html").write_text(head + opener + "\n" + body_end + tail, encoding="utf-8")
    names.append(name)
(work / "views.txt").write_text("\n".join(names) + "\n")
EOF

while read -r name; do
    profile=$(mktemp -d -p "$work")
    rm -f "$out/$name.png"
    "$chromium" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync --hide-scrollbars \
        --user-data-dir="$profile" --window-size="$size" --virtual-time-budget=5000 \
        --screenshot="$out/$name.png" "file://$work/$name.html" >/dev/null 2>&1 \
        || echo "$0: chromium failed on view $name" >&2
    if [[ -f "$out/$name.png" ]]; then echo "$out/$name.png"; else failed=1; fi
done < "$work/views.txt"
exit "${failed:-0}"
