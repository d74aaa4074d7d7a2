"""Write README.md from nbs/index.ipynb (what `nbdev-readme` does with Quarto, which this machine lacks).

`python tools/readme.py` writes README.md; `python tools/readme.py --check` exits 1 when README.md differs.
"""
import argparse, difflib, sys
from pathlib import Path

import nbformat
from nbconvert import MarkdownExporter

ROOT = Path(__file__).resolve().parents[1]


def _directives(cell): return [l for l in cell.source.splitlines() if l.startswith("#|")]


def _visible(cell):
    "Cells a reader of the docs sees: those without `#| hide`."
    return not any(d[2:].strip() == "hide" for d in _directives(cell))


def _strip_directives(cell):
    cell.source = "\n".join(l for l in cell.source.splitlines() if not l.startswith("#|")).strip("\n")
    return cell


def _as_markdown(cell):
    "A code cell flagged `#| output: asis` is its printed text, read as Markdown (as Quarto reads it)."
    if cell.cell_type != "code" or "output: asis" not in [d[2:].strip() for d in _directives(cell)]: return cell
    return nbformat.v4.new_markdown_cell("".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream"))


def readme_text(nb_path=ROOT / "nbs" / "index.ipynb") -> str:
    "The Markdown of `nb_path` with hidden cells dropped, `output: asis` cells as their Markdown, and nbdev directives stripped."
    nb = nbformat.read(nb_path, as_version=4)
    nb.cells = [_strip_directives(_as_markdown(c)) for c in nb.cells if _visible(c)]
    body, _ = MarkdownExporter(exclude_input_prompt=True, exclude_output_prompt=True).from_notebook_node(nb)
    return "<!-- Generated from nbs/index.ipynb by tools/readme.py: edit the notebook, not this file. -->\n\n" + body.strip() + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--check", action="store_true", help="fail when README.md is out of step with nbs/index.ipynb")
    args = ap.parse_args()
    want, readme = readme_text(), ROOT / "README.md"
    if not args.check: return readme.write_text(want)
    have = readme.read_text() if readme.exists() else ""
    if have != want:
        sys.stdout.writelines(difflib.unified_diff(have.splitlines(True), want.splitlines(True), "README.md", "from nbs/index.ipynb"))
        sys.exit("README.md is out of step with nbs/index.ipynb: run `make readme` and commit README.md")


if __name__ == "__main__": main()
