"""Decode-once cache versus decoding JPEGs every epoch: images/s and peak memory of both, and their ratio, in one run.

Uses the real set sdss-spirals (2,000 SDSS JPEGs, 424x424) under `gzh.testing.shared_data_dir()` when present, else 300
demo galaxies written as 424x424 JPEGs to a temporary folder. Run: `.venv/bin/python bench/data.py [SIZE]`.
"""
import sys, tempfile, time, tracemalloc
from pathlib import Path

import numpy as np, torch
from PIL import Image

from gzh.data import galaxy_dls, load_cache
from gzh.testing import shared_data_dir

SIZE = int(sys.argv[1]) if len(sys.argv) > 1 else 64
BS = 64
SHARED = shared_data_dir()  # None where the real sets are absent


def jpeg_folder(tmp: Path) -> tuple[Path, list[Path], str]:
    "The folder to read, its JPEGs, and a description."
    sdss = SHARED/'sdss-spirals' if SHARED else None
    if sdss and sdss.is_dir(): return sdss, sorted((sdss/'images').glob('*.jpg')), 'sdss-spirals (SDSS, 424x424 JPEG)'
    demo = load_cache('demo:300', size=424, cache_dir=tmp/'demo-cache', progress=False)
    for i, im in enumerate(demo.images): Image.fromarray(im.transpose(1, 2, 0)).save(tmp/f'{i:04d}.jpg', quality=90)
    return tmp, sorted(tmp.glob('*.jpg')), 'demo galaxies written as 424x424 JPEG'


def measure(fn) -> tuple[float, float]:
    "Seconds and peak traced heap (MB) of `fn()`."
    tracemalloc.start()
    t = time.perf_counter()
    fn()
    dt = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return dt, peak


def decode_epoch(files):
    "What a pipeline without a cache does every epoch: open, decode, convert, resize, batch."
    for i in range(0, len(files), BS):
        batch = [np.asarray(Image.open(f).convert('RGB').resize((SIZE, SIZE), Image.Resampling.LANCZOS)) for f in files[i:i + BS]]
        torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2)


def main():
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        folder, files, what = jpeg_folder(tmp)
        n = len(files)
        print(f'source: {what}, {n} images -> {SIZE}x{SIZE} uint8, batches of {BS}')
        t_dec, m_dec = measure(lambda: decode_epoch(files))
        t_build, m_build = measure(lambda: load_cache(folder, size=SIZE, cache_dir=tmp/'cache', progress=False))
        cache = load_cache(folder, size=SIZE, cache_dir=tmp/'cache', progress=False)
        dls = galaxy_dls(cache, bs=BS, valid_pct=0, device='cpu')
        dls.train.drop_last = False
        read_epoch = lambda: sum(len(b[0]) for b in dls.train)
        read_epoch()  # one warm-up epoch
        t_read, m_read = min((measure(read_epoch) for _ in range(3)), key=lambda r: r[0])
        n_train = len(dls.train.dataset)
        dec, read = n / t_dec, n_train / t_read
        print(f'decode JPEG every epoch (PIL open+convert+resize): {dec:10.0f} images/s   peak heap {m_dec:7.1f} MB')
        print(f'build the cache once (PIL draft+resize, to disk):  {n / t_build:10.0f} images/s   peak heap {m_build:7.1f} MB'
              f'   ({t_build:.1f} s, one time)')
        print(f'read the cache (galaxy_dls, memmap batches):       {read:10.0f} images/s   peak heap {m_read:7.1f} MB')
        print(f'ratio read cache / decode JPEG: {read / dec:.1f}x   (cache file {cache.images.nbytes / 2**20:.1f} MB on disk)')


if __name__ == '__main__': main()
