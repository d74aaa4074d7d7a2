"""Run notebooks in place and save their outputs, with figures stored small (JPEG at 72 dpi, not retina PNG).

`python tools/run_nb.py nbs/04_noise_masks.ipynb ...` runs every cell except those flagged `#| slow` (or any
flag in `[tool.nbdev] tst_flags`), which keep the outputs they have; `--slow` runs those too. Cells flagged
`#| eval: false` never run; PNG figures that cells not run still carry are stored as half-size JPEGs.
Outputs are written back, then the notebook is cleaned as `nbdev-clean` would.
"""
import argparse, base64, io, subprocess, sys, time
from pathlib import Path

from PIL import Image

from fastcore.nbio import read_nb, write_nb
from execnb.shell import CaptureShell

ROOT = Path(__file__).resolve().parents[1]
SMALL_FIGURES = ("import matplotlib as mpl; mpl.rcParams['figure.dpi'] = 72\n"
                 "set_matplotlib_formats('jpeg', pil_kwargs={'quality': 70}, bbox_inches='tight')")


def _flags(cell) -> set:
    return {w for l in cell.source.splitlines() if l.startswith('#|') for w in l[2:].split()}


def small_jpeg(png_b64:str, scale:float=0.5, quality:int=70) -> str:
    "A base64 PNG figure re-encoded as a base64 JPEG at `scale` of its size (retina PNGs are 2x what a page shows)."
    im = Image.open(io.BytesIO(base64.b64decode(png_b64))).convert('RGB')
    im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.Resampling.LANCZOS)
    buf = io.BytesIO(); im.save(buf, 'JPEG', quality=quality)
    return base64.b64encode(buf.getvalue()).decode()


def shrink_kept_figures(cell):
    "PNG figures in the outputs of a cell that was not run are stored as small JPEGs."
    for o in cell.get('outputs', []):
        data = o.get('data', {})
        if 'image/png' in data: data['image/jpeg'] = small_jpeg(data.pop('image/png'))


def run_notebook(path:Path, slow:bool=False, skip_flags=('slow', 'notest')):
    "Execute `path` cell by cell in its own folder, keeping the old outputs of cells that are not run."
    nb = read_nb(path)
    shell = CaptureShell(path=path.parent, mpl_format='jpeg')
    shell.run_cell(SMALL_FIGURES)
    def skip(cell):
        if cell.cell_type != 'code': return True
        f = _flags(cell)
        skipped = ('eval:' in f and 'false' in f) or (not slow and bool(f & set(skip_flags)))
        if skipped: shrink_kept_figures(cell)
        return skipped
    t = time.time()
    try: shell.run_all(nb, exc_stop=True, preproc=skip)
    finally: write_nb(nb, path)  # a failing cell keeps the outputs, and its traceback, of every cell before it
    print(f"{path}: ran in {time.time() - t:.0f} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument('notebooks', nargs='+', type=Path)
    ap.add_argument('--slow', action='store_true', help='also run cells flagged slow/notest')
    a = ap.parse_args()
    for p in a.notebooks:
        run_notebook(p.resolve(), a.slow)
        subprocess.run([str(Path(sys.executable).parent/'nbdev-clean'), '--fname', str(p)], check=True, cwd=ROOT)


if __name__ == '__main__': main()
