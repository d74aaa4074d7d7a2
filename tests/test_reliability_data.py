"Issue 15, the data layer: each test names the case it covers; each failed before the fix."
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from PIL import Image

from gzh.data import galaxy_dls, load_cache, write_skipped
from gzh.sources import GalaxyDataError, atomic_output
from gzh.data import check_size
from galaxies import galaxy_jpeg, write_galaxies


def one_line(e) -> str:
    "The exception's message, checked to be one line."
    msg = str(e.value)
    assert '\n' not in msg, msg
    return msg


def test_stale_build_folder_removed(tmp_path):
    "case 4: a cache build killed with SIGKILL leaves a temporary folder; the next build removes it."
    script = textwrap.dedent(f'''
        import os, signal, numpy as np, pandas as pd
        from gzh.data import load_cache
        from gzh.sources import Decoded, Source
        def read(i, size):
            if i == 3: os.kill(os.getpid(), signal.SIGKILL)
            return Decoded(np.full((3, size, size), 7, np.uint8))
        load_cache(Source('killed', pd.DataFrame({{'id': list('abcdef')}}), read), size=8, cache_dir={str(tmp_path)!r}, progress=False)
    ''')
    r = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True)
    assert r.returncode == -9, r.stderr
    assert [p for p in tmp_path.glob('.*.tmp')]  # what kill -9 leaves behind
    from gzh.sources import Decoded, Source
    good = Source('other', pd.DataFrame({'id': list('ab')}), lambda i, size: Decoded(np.zeros((3, size, size), np.uint8)))
    load_cache(good, size=8, cache_dir=tmp_path, progress=False)
    assert not list(tmp_path.glob('.*.tmp'))


def test_nan_split_row_refused(tmp_path):
    "case 7: a catalogue row whose split is NaN belongs to neither train nor valid: refused, naming the row."
    write_galaxies(tmp_path, n=6, size=32)
    pd.DataFrame({'filename': [f'g{i:03d}.png' for i in range(6)],
                  'split': ['train', 'train', None, 'valid', 'train', 'valid']}).to_csv(tmp_path/'catalog.csv', index=False)
    cache = load_cache(tmp_path/'catalog.csv', size=32, cache_dir=tmp_path/'cache', progress=False)
    with pytest.raises(ValueError) as e: galaxy_dls(cache, bs=2, device='cpu')
    assert "1 catalogue row(s) with a 'split' that is neither train nor valid/validation/test (row 2: " in one_line(e)


def test_small_image_upscaled_with_note(tmp_path):
    "case 8: a 5x5 image is upscaled with a note in the catalogue and a warning."
    galaxy_jpeg(tmp_path/'big.jpg')
    Image.new('RGB', (5, 5), 'white').save(tmp_path/'tiny.png')
    with pytest.warns(UserWarning, match='1 of 2 images were smaller than 32 px and were upscaled'):
        cache = load_cache(tmp_path, size=32, cache_dir=tmp_path/'cache', progress=False)
    notes = dict(zip(cache.catalog.filename, cache.catalog.note))
    assert notes['tiny.png'] == 'upscaled 5x5 to 32x32' and 'upscaled' not in notes['big.jpg']


def test_duplicate_rows_refused(tmp_path):
    "case 14: duplicate catalogue rows are refused before decoding, naming the duplicate ids and their rows."
    write_galaxies(tmp_path, n=3, size=32)
    pd.DataFrame({'filename': ['g000.png', 'g001.png', 'g000.png', 'g002.png']}).to_csv(tmp_path/'cat.csv', index=False)
    with pytest.raises(GalaxyDataError) as e:
        load_cache(tmp_path/'cat.csv', size=32, cache_dir=tmp_path/'cache', progress=False)
    assert "1 galaxy ids appear more than once ('g000' in rows 0, 2); give each galaxy one row" in one_line(e)
    assert not (tmp_path/'cache').exists()


def test_huge_size_refused_first(tmp_path):
    "case 16: --size 100000 is refused in one line, before the source is read (not in np.memmap)."
    with pytest.raises(ValueError) as e: load_cache('no/such/source', size=100000, cache_dir=tmp_path)
    assert one_line(e) == 'size must be a whole number between 1 and 2048, not 100000'


@pytest.mark.parametrize('size', [0, -1])
def test_zero_and_negative_size_refused(tmp_path, size):
    "case 18 (load_cache): --size 0 and -1 are refused in one line naming the size, not an image."
    with pytest.raises(ValueError) as e: load_cache('demo:8', size=size, cache_dir=tmp_path)
    assert one_line(e) == f'size must be a whole number between 1 and 2048, not {size}'
    assert not isinstance(e.value, GalaxyDataError)


def test_check_size():
    "cases 18/19: check_size, which fit_galaxies uses with the model's depth before building the cache."
    assert check_size(64) == 64
    with pytest.raises(ValueError, match='size must be a multiple of 8 between 8 and 2048, not 7'): check_size(7)
    with pytest.raises(ValueError, match='a multiple of 16 between 16 and 512, not 24'): check_size(24, depth=4, max_size=512)
    with pytest.raises(ValueError, match='not 64.0'): check_size(64.0)


def fits_file(path, data, truncate=False):
    fits.PrimaryHDU(data).writeto(path)
    if truncate: path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])
    return path


def test_truncated_fits_named(tmp_path):
    "case 21: a truncated FITS gives 'truncated or unreadable FITS', not 'unexpected TypeError', as a source and in a folder."
    (tmp_path/'imgs').mkdir()
    f = fits_file(tmp_path/'imgs'/'cut.fits', np.random.rand(64, 64), truncate=True)
    for source in (f, tmp_path/'imgs'):
        with pytest.raises(GalaxyDataError) as e: load_cache(source, size=32, cache_dir=tmp_path/'cache', progress=False)
        assert 'cut.fits' in one_line(e) and 'truncated or unreadable FITS' in str(e.value) and 'unexpected' not in str(e.value)


@pytest.mark.parametrize('shape', [(100,), (3, 32, 32)])
def test_fits_without_2d_image_says_why(tmp_path, shape):
    "case 21: a 1-D or 3-D FITS as the source says it holds no 2-D image and what it holds, not 'empty source'."
    f = fits_file(tmp_path/'x.fits', np.random.rand(*shape))
    with pytest.raises(GalaxyDataError) as e: load_cache(f, size=32, cache_dir=tmp_path/'cache', progress=False)
    assert f'no 2-D image in this FITS file (HDU 0: {shape})' in one_line(e) and 'empty source' not in str(e.value)


def test_nan_file_name_row_number(tmp_path):
    "case 22: a NaN file name is refused naming its row; on_error='skip' skips that row and lists it."
    write_galaxies(tmp_path, n=2, size=32)
    pd.DataFrame({'filename': ['g000.png', None, 'g001.png']}).to_csv(tmp_path/'cat.csv', index=False)
    with pytest.raises(GalaxyDataError) as e: load_cache(tmp_path/'cat.csv', size=32, cache_dir=tmp_path/'cache', progress=False)
    assert one_line(e).endswith('cat.csv: row 1 (filename): empty file name nan')
    cache = load_cache(tmp_path/'cat.csv', size=32, cache_dir=tmp_path/'cache', on_error='skip', progress=False)
    assert len(cache) == 2 and cache.skipped == [(str(tmp_path/'cat.csv'), 'row 1 (filename): empty file name nan')]


def zoobot_catalogue(tmp_path, n=24, relative=False) -> Path:
    "A galaxy-datasets/Zoobot-style catalogue: `id_str`, `file_loc` (absolute) and labels, images in another folder."
    images = write_galaxies(tmp_path/'survey'/'images', n=n, size=48)
    files = sorted(images.glob('*.png'))
    (tmp_path/'catalogues').mkdir()
    cat = pd.DataFrame({'id_str': [f'J{1000 + i}+{2000 + i}' for i in range(n)],
                        'file_loc': [os.path.relpath(f, tmp_path/'catalogues') if relative else str(f) for f in files],
                        'smooth-or-featured_smooth_fraction': np.linspace(0, 1, n)})
    cat.to_parquet(tmp_path/'catalogues'/'zoobot.parquet', index=False)
    return tmp_path/'catalogues'/'zoobot.parquet'


@pytest.mark.parametrize('relative', [False, True])
def test_zoobot_catalogue_loads(tmp_path, relative):
    "case 26: a catalogue with `id_str` and `file_loc` (absolute, or relative to its folder) and no `filename` loads."
    cache = load_cache(zoobot_catalogue(tmp_path, relative=relative), size=32, cache_dir=tmp_path/'cache', progress=False)
    assert len(cache) == 24 and cache.catalog.id.tolist() == cache.catalog.id_str.tolist()
    assert cache.catalog.id_str[0] == 'J1000+2000' and cache.images[:, :, 16, 16].max() > 100


def test_absolute_filename_needs_image_root(tmp_path):
    "case 26: an absolute `filename` is refused unless it lies below `image_root`."
    images = write_galaxies(tmp_path/'survey', n=3, size=32)
    (tmp_path/'cats').mkdir()
    pd.DataFrame({'filename': [str(p) for p in sorted(images.glob('*.png'))]}).to_csv(tmp_path/'cats'/'c.csv', index=False)
    with pytest.raises(GalaxyDataError) as e: load_cache(tmp_path/'cats'/'c.csv', size=32, cache_dir=tmp_path/'cache')
    assert 'escapes the image folder' in one_line(e) and '--image-root' in str(e.value)
    cache = load_cache(tmp_path/'cats'/'c.csv', size=32, cache_dir=tmp_path/'cache', image_root=images, progress=False)
    assert len(cache) == 3
    with pytest.raises(GalaxyDataError, match='escapes'):
        load_cache(tmp_path/'cats'/'c.csv', size=32, cache_dir=tmp_path/'cache', image_root=tmp_path/'cats')


def test_zoobot_catalogue_trains_and_embeds(tmp_path):
    "cases 26 and 27: a galaxy-datasets-style catalogue trains for an epoch and embeds; the table carries `id_str`."
    from gzh.embed import embed
    from gzh.train import fit_galaxies
    cache = load_cache(zoobot_catalogue(tmp_path), size=32, cache_dir=tmp_path/'cache', progress=False)
    learn = fit_galaxies(cache=cache, out=tmp_path/'run', epochs=1, bs=8, size=32, model_kw=dict(width=8, depth=2),
                         device='cpu', progress=False)
    emb = embed(learn.model, cache, device='cpu')
    assert emb['id_str'].tolist() == cache.catalog.id_str.tolist() and emb['id_str'][0] == 'J1000+2000'


def test_id_str_kept_as_text(tmp_path):
    "case 27: a numeric `id_str` (as SDSS object ids are) is kept, as text, beside `id`, in the cache's catalogue."
    write_galaxies(tmp_path, n=2, size=32)
    pd.DataFrame({'id_str': [587722981741363294, 587722981741363295],
                  'filename': ['g000.png', 'g001.png']}).to_csv(tmp_path/'cat.csv', index=False)
    cat = load_cache(tmp_path/'cat.csv', size=32, cache_dir=tmp_path/'cache', progress=False).catalog
    assert cat.id_str.tolist() == ['587722981741363294', '587722981741363295'] == cat.id.tolist()


def test_symlink_escape_refused(tmp_path):
    "case 29: a symbolic link inside the image folder that points outside it is refused (links resolved first)."
    galaxy_jpeg(tmp_path/'private.jpg')
    (tmp_path/'data'/'images').mkdir(parents=True)
    galaxy_jpeg(tmp_path/'data'/'images'/'a.jpg')
    (tmp_path/'data'/'images'/'b.jpg').symlink_to(tmp_path/'private.jpg')
    pd.DataFrame({'filename': ['a.jpg', 'b.jpg']}).to_csv(tmp_path/'data'/'catalog.csv', index=False)
    with pytest.raises(GalaxyDataError) as e: load_cache(tmp_path/'data', size=32, cache_dir=tmp_path/'cache', progress=False)
    assert 'b.jpg' in one_line(e) and 'escapes the image folder' in str(e.value)


def test_write_skipped(tmp_path):
    "case 23 (the report): `write_skipped` writes skipped.csv (file, reason) atomically; nothing skipped, no file."
    galaxy_jpeg(tmp_path/'good.jpg')
    (tmp_path/'bad.jpg').write_bytes(b'')
    cache = load_cache(tmp_path, size=32, cache_dir=tmp_path/'cache', on_error='skip', progress=False)
    out = write_skipped(cache, tmp_path/'run')
    df = pd.read_csv(out)
    assert out == tmp_path/'run'/'skipped.csv' and df.columns.tolist() == ['file', 'reason']
    assert df.file[0].endswith('bad.jpg') and df.reason[0] == 'empty file (0 bytes)'
    (tmp_path/'bad.jpg').unlink()
    clean = load_cache(tmp_path, size=32, cache_dir=tmp_path/'cache', progress=False)
    assert write_skipped(clean, tmp_path/'run') is None and not out.exists()


def test_atomic_output(tmp_path):
    "case 30 (the shared helper): a failed write leaves the old file or folder untouched and no temporary behind."
    f, d = tmp_path/'report.json', tmp_path/'shards'
    f.write_text('old')
    d.mkdir(); (d/'old.parquet').write_text('old')
    for target, write in ((f, lambda t: t.write_text('new')), (d, lambda t: (t.mkdir(), (t/'new.parquet').write_text('new')))):
        with pytest.raises(RuntimeError):
            with atomic_output(target) as t:
                write(t); raise RuntimeError('disk full')
    assert f.read_text() == 'old' and [p.name for p in d.iterdir()] == ['old.parquet']
    assert sorted(p.name for p in tmp_path.iterdir()) == ['report.json', 'shards']
    with atomic_output(d) as t: t.mkdir(); (t/'new.parquet').write_text('new')
    assert [p.name for p in d.iterdir()] == ['new.parquet'] and sorted(p.name for p in tmp_path.iterdir()) == ['report.json', 'shards']
