"The docs as Quarto would get them: nbdev's processed notebooks are valid, and README.md is in step with nbs/index.ipynb."
import subprocess, sys
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
