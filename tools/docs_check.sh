#!/usr/bin/env bash
# Render the processed notebooks to HTML (nbconvert stands in for Quarto, which this machine lacks) and take
# headless Chromium screenshots of the home page and of a page with figures. Output goes to a temporary folder.
set -euo pipefail
BIN=${BIN:-.venv/bin}
PAGES=${PAGES:-"index 04_noise_masks 10_cluster"}
"$BIN/nbdev-proc-nbs" >/dev/null 2>&1
command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
out=$(mktemp -d -t gzh-docs-XXXX)
"$BIN/jupyter" nbconvert --log-level=WARN --to html --output-dir "$out" _proc/*.ipynb
for page in $PAGES; do
  chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --user-data-dir="$(mktemp -d)" --hide-scrollbars \
    --window-size=1280,2400 --screenshot="$out/$page.png" "file://$out/$page.html" 2>/dev/null
  test -s "$out/$page.png" || { echo "no screenshot of $page" >&2; exit 1; }
done
echo "HTML and screenshots in $out"
