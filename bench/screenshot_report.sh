#!/usr/bin/env bash
# Render the HTML report in headless Chromium (Debian's `chromium` package), check that it
# loads without console errors or failed requests and holds every section, and save a
# screenshot (docs/report.png by default, quantised to stay small for the README).
#
#   bench/screenshot_report.sh [REPORT.html] [OUT.png]
#
# Without REPORT.html it builds one from a generated history (30,000 shipments, seed 3):
# generate -> train -> report, in a temporary directory. Needs `window-advisor` on PATH
# (or WINDOW_ADVISOR=/path/to/window-advisor) and `apt-get install -y chromium`.
set -euo pipefail
cd "$(dirname "$0")/.."
WA=${WINDOW_ADVISOR:-window-advisor}
PY=${PYTHON:-python3}
report=${1:-}
shot=${2:-docs/report.png}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

command -v chromium >/dev/null || { echo "chromium not found: apt-get install -y chromium" >&2; exit 1; }

if [[ -z "$report" ]]; then
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
    "$WA" generate --rows 30000 --out "$work/history.parquet" --seed 3
    "$WA" train --history "$work/history.parquet" --model "$work/model"
    "$WA" report --history "$work/history.parquet" --model "$work/model" --out "$work/report.html"
    report="$work/report.html"
fi
report=$(realpath "$report")

chrome=(chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run
        --disable-background-networking --disable-component-update --disable-sync
        --enable-logging=stderr --v=0)

# 0. The file itself refers to nothing outside it.
if grep -qi 'http' "$report"; then echo "$report mentions http" >&2; exit 1; fi

# 1. The DOM as rendered: every section must be there; console errors fail the check.
"${chrome[@]}" --user-data-dir="$(mktemp -d -p "$work")" --dump-dom "file://$report" \
    >"$work/dom.html" 2>"$work/dom.log"
for section in transit late-by-month calibration decision-cost lanes; do
    grep -q "id=\"$section\"" "$work/dom.html" || { echo "section $section missing" >&2; exit 1; }
done
images=$(grep -o '<img ' "$work/dom.html" | wc -l)
inline=$(grep -o '<img src="data:image/png;base64,' "$work/dom.html" | wc -l)
[[ "$images" -gt 0 && "$images" -eq "$inline" ]] || { echo "images: $inline of $images inline" >&2; exit 1; }

# 2. The screenshot.
mkdir -p "$(dirname "$shot")"
"${chrome[@]}" --user-data-dir="$(mktemp -d -p "$work")" --window-size=1280,2400 \
    --screenshot="$work/raw.png" "file://$report" >/dev/null 2>"$work/shot.log"
if grep -hE 'CONSOLE|Uncaught|ERR_|Failed to load' "$work/dom.log" "$work/shot.log"; then
    echo "chromium reported errors while rendering $report" >&2
    exit 1
fi
"$PY" - "$work/raw.png" "$shot" <<'PY'
import sys
from PIL import Image

raw, out = sys.argv[1:]
image = Image.open(raw).convert("RGB")
image.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
PY
echo "rendered $report: $images inline images, no console errors; screenshot $shot" \
     "($(( $(stat -c %s "$shot") / 1024 )) KiB)"
