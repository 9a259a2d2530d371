#!/usr/bin/env bash
# A screenshot of `dvc plots show` (or `dvc plots diff REVS...`) in headless Chromium, to check by eye that
# every training's loss is drawn against the step and the CAM threshold sweeps against the threshold.
#
#   scripts/screenshot_plots.sh OUT.png [REV ...]     (run in the project, with its environment active)
#
# DVC's page loads Vega from a CDN; without network the page stays blank, so the script renders it with a
# local Vega (npm packages vega@5, vega-lite@5, vega-embed@6 in $VEGA_DIR, default
# ~/.cache/sipe-pipeline/vega, installed there with npm when missing). Needs dvc, chromium and npm.
set -euo pipefail

if [[ $# -lt 1 ]]; then
    echo "usage: $0 OUT.png [REV ...]" >&2
    exit 2
fi
out=$(realpath -m "$1")
shift
vega=${VEGA_DIR:-$HOME/.cache/sipe-pipeline/vega}
chromium=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
[[ -n "$chromium" ]] || { echo "$0: no chromium found (set CHROMIUM)" >&2; exit 1; }
if [[ ! -f "$vega/node_modules/vega-embed/build/vega-embed.min.js" ]]; then
    mkdir -p "$vega"
    (cd "$vega" && npm install --silent --no-audit --no-fund vega@5 vega-lite@5 vega-embed@6 >/dev/null)
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/template.html" <<EOF
<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>dvc plots</title>
<script src="file://$vega/node_modules/vega/build/vega.min.js"></script>
<script src="file://$vega/node_modules/vega-lite/build/vega-lite.min.js"></script>
<script src="file://$vega/node_modules/vega-embed/build/vega-embed.min.js"></script>
</head>
<body>
{plot_divs}
</body>
</html>
EOF
if [[ $# -gt 0 ]]; then
    dvc plots diff "$@" --html-template "$work/template.html" -o "$work/plots" >/dev/null
else
    dvc plots show --html-template "$work/template.html" -o "$work/plots" >/dev/null
fi
"$chromium" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --user-data-dir="$work/profile" --allow-file-access-from-files \
    --window-size=1400,4000 --virtual-time-budget=10000 --screenshot="$out" "file://$work/plots/index.html" \
    2>/dev/null
echo "$out"
