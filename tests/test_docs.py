"The docs as Quarto would get them: nbdev's processed notebooks are valid, and README.md is in step with nbs/index.ipynb."
import re, subprocess, sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def processed(tmp_path_factory) -> Path:
    res = subprocess.run([str(BIN / "nbdev-proc-nbs")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    return ROOT / "_proc"


def test_every_notebook_is_processed_and_valid(processed):
    sources = sorted(p.name for p in (ROOT / "nbs").glob("*.ipynb"))
    done = sorted(p.name for p in processed.glob("*.ipynb"))
    assert done == sources
    for name in done: nbformat.validate(nbformat.read(processed / name, as_version=4))


def test_processed_notebooks_keep_no_nbdev_directives(processed):
    for p in processed.glob("*.ipynb"):
        for cell in nbformat.read(p, as_version=4).cells:
            if cell.cell_type == "code": assert "#| export" not in cell.source, f"{p.name}: directive left in a cell"


def test_every_notebook_has_outputs_from_a_run():
    for p in sorted((ROOT / "nbs").glob("[0-9]*.ipynb")):
        code = [c for c in nbformat.read(p, as_version=4).cells if c.cell_type == "code"]
        assert any(c.get("outputs") for c in code), f"{p.name} has no outputs: run it and commit them"


def test_readme_is_in_step_with_index():
    res = subprocess.run([sys.executable, "tools/readme.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr


def test_notebooks_are_small():
    total = sum(p.stat().st_size for p in (ROOT / "nbs").glob("*.ipynb"))
    assert total <= 3 * 2**20, f"notebooks weigh {total / 2**20:.1f} MB together; save figures smaller (tools/run_nb.py)"


HEADING_IN_CODE = re.compile(r"^\s*#\s*%%|^\s*#\s*#{1,6}\s|^#{2,6}\s")


def test_no_markdown_heading_inside_a_code_cell():
    for p in sorted((ROOT / "nbs").glob("*.ipynb")):
        for cell in nbformat.read(p, as_version=4).cells:
            if cell.cell_type != "code": continue
            bad = [l for l in cell.source.splitlines() if HEADING_IN_CODE.match(l)]
            assert not bad, f"{p.name}: a markdown heading inside a code cell never renders: {bad[0]!r}"


def test_sidebar_lists_every_notebook():
    listed = re.findall(r"-\s+(\S+\.ipynb)", (ROOT / "nbs" / "sidebar.yml").read_text())
    assert sorted(listed) == sorted(p.name for p in (ROOT / "nbs").glob("*.ipynb"))


def test_modules_fit_in_400_lines():
    for p in sorted((ROOT / "gzh").glob("*.py")):
        if p.name == "_modidx.py": continue  # nbdev's generated index
        n = len(p.read_text().splitlines())
        assert n <= 400, f"gzh/{p.name} has {n} lines: split it along the lines its notebook draws"


def test_readme_quotes_the_source_kinds():
    from gzh.sources import SOURCE_KINDS
    assert SOURCE_KINDS in (ROOT / "README.md").read_text()


def test_install_cell_brings_what_the_notebook_imports():
    "case 31: a notebook that imports nbdev installs it in its first code cell, so it runs on a fresh Colab runtime."
    for p in sorted((ROOT / "nbs").glob("[0-9]*.ipynb")):
        cells = [c.source for c in nbformat.read(p, as_version=4).cells if c.cell_type == "code"]
        install = next((s for s in cells if "%pip install" in s), "")
        assert "gzh" in install, f"{p.name}: no install cell"
        if any(re.search(r"^\s*(import|from) nbdev", s, re.M) for s in cells):
            assert re.search(r"\bnbdev\b", install.split("%pip install", 1)[1]), f"{p.name} imports nbdev but its install cell does not install it"
