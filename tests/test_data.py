"Integration and bad-input tests of the data modules (sources, galaxy_zoo, data): GZ:H layout, shared real sets, every bad-input case, cache atomicity, the split."
import io
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from gzh.data import GalaxyCache, galaxy_dls, load_cache, show_galaxies
from gzh.galaxy_zoo import GZH_CATALOGS, gzh_vote_cols
from gzh.sources import Decoded, GalaxyDataError, Source, split_idxs
from gzh.testing import fake_gz_hubble
from galaxies import galaxy_jpeg


@pytest.fixture
def tiny_cache(tmp_path) -> GalaxyCache:
    "A 40-galaxy demo cache at 32 px in a temporary cache folder."
    return load_cache('demo:40', size=32, cache_dir=tmp_path/'cache', progress=False)


def jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(buf, 'JPEG')
    return buf.getvalue()


# every bad file: (name, how to write it, words the message must contain)
BAD_FILES = {
    'corrupt': ('corrupt.jpg', lambda p: p.write_bytes(b'\xff\xd8\xff' + bytes(range(256)) * 4), 'not a readable image'),
    'truncated': ('truncated.jpg', lambda p: p.write_bytes(jpeg_bytes()[:300]), 'truncated'),
    'empty': ('empty.jpg', lambda p: p.write_bytes(b''), 'empty file'),
    'not an image': ('notes.png', lambda p: p.write_text('these are my notes, not a galaxy'), 'not a readable image'),
    'bad FITS': ('stamp.fits', lambda p: p.write_text('SIMPLE = nonsense'), 'FITS'),
}


@pytest.mark.parametrize('case', list(BAD_FILES))
def test_bad_file_raise_and_skip(tmp_path, case):
    name, write, words = BAD_FILES[case]
    folder = tmp_path/'imgs'
    folder.mkdir()
    galaxy_jpeg(folder/'good.jpg')
    write(folder/name)
    with pytest.raises(GalaxyDataError) as e:
        load_cache(folder, size=32, cache_dir=tmp_path/'cache', progress=False)
    assert name in str(e.value) and words in str(e.value)
    assert not (tmp_path/'cache').exists() or not any((tmp_path/'cache').iterdir())  # nothing half-written left
    cache = load_cache(folder, size=32, cache_dir=tmp_path/'cache', on_error='skip', progress=False)
    assert len(cache) == 1 and cache.catalog.filename.tolist() == ['good.jpg']
    assert len(cache.skipped) == 1 and cache.skipped[0][0].endswith(name) and words in cache.skipped[0][1]
    assert cache.images[0].max() > 200  # the good galaxy decoded
    with pytest.raises(GalaxyDataError, match='skipped'):  # a 'raise' caller is told about the skipped file
        load_cache(folder, size=32, cache_dir=tmp_path/'cache', progress=False)


def test_conversions_load_with_notes(tmp_path):
    "Grey, RGBA, 16-bit and non-square images load, converted, and say so in `note`."
    folder = tmp_path/'imgs'
    folder.mkdir()
    ramp = np.tile(np.linspace(0, 4000, 48), (48, 1)).astype(np.uint16)
    Image.fromarray((ramp // 16).astype(np.uint8)).save(folder/'grey.png')
    rgba = np.zeros((48, 48, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 128
    Image.fromarray(rgba).save(folder/'rgba.png')
    Image.fromarray(ramp).save(folder/'deep16.png')
    galaxy_jpeg(folder/'odd.jpg', size=(500, 300))
    cache = load_cache(folder, size=32, cache_dir=tmp_path/'cache', progress=False)
    notes = dict(zip(cache.catalog.filename, cache.catalog.note))
    assert 'grey' in notes['grey.png'] and 'alpha composited on black' in notes['rgba.png']
    assert '8 bit' in notes['deep16.png'] and 'cropped 500x300' in notes['odd.jpg']
    imgs = {f: cache.images[i] for i, f in enumerate(cache.catalog.filename)}
    assert (imgs['grey.png'][0] == imgs['grey.png'][1]).all()
    assert abs(int(imgs['rgba.png'][0].mean()) - 128) <= 2 and imgs['rgba.png'][1:].max() == 0  # red at half alpha on black
    assert imgs['deep16.png'].max() >= 250  # scaled by its maximum, not left dark
    assert imgs['odd.jpg'].shape == (3, 32, 32) and imgs['odd.jpg'][:, 16, 16].max() > 200  # centre kept


def write_catalog(tmp_path, names, extra=None) -> Path:
    base = tmp_path/'set'
    (base/'images').mkdir(parents=True)
    galaxy_jpeg(base/'images'/'good.jpg')
    (tmp_path/'outside.jpg').write_bytes(jpeg_bytes())
    pd.DataFrame({'filename': names, 'kind': range(len(names)), **(extra or {})}).to_csv(base/'catalog.csv', index=False)
    return base/'catalog.csv'


@pytest.mark.parametrize('name,words', [('missing.jpg', 'file not found'), ('../outside.jpg', 'escapes the image folder'),
                                        ('../../etc/passwd', 'escapes the image folder'), ('', 'empty file name')])
def test_catalogue_bad_names(tmp_path, name, words):
    cat = write_catalog(tmp_path, ['good.jpg', name])
    with pytest.raises(GalaxyDataError, match=words):
        load_cache(cat, size=32, cache_dir=tmp_path/'cache', progress=False)
    cache = load_cache(cat, size=32, cache_dir=tmp_path/'cache', on_error='skip', progress=False)
    assert cache.catalog.filename.tolist() == ['good.jpg'] and cache.catalog.kind.tolist() == [0]  # labels kept
    assert words in cache.skipped[0][1]


def test_catalogue_without_filename_and_empty_sources(tmp_path):
    (tmp_path/'a.csv').write_text('path,label\nx.jpg,1\n')
    with pytest.raises(GalaxyDataError, match="no 'filename' column"): load_cache(tmp_path/'a.csv', cache_dir=tmp_path/'c')
    (tmp_path/'b.csv').write_text('filename,label\n')
    with pytest.raises(GalaxyDataError, match='empty source'): load_cache(tmp_path/'b.csv', cache_dir=tmp_path/'c')
    (tmp_path/'empty').mkdir()
    with pytest.raises(GalaxyDataError, match='empty source'): load_cache(tmp_path/'empty', cache_dir=tmp_path/'c')
    (tmp_path/'allbad').mkdir()
    (tmp_path/'allbad'/'x.jpg').write_bytes(b'')
    with pytest.raises(GalaxyDataError, match='empty source.*x.jpg'):
        load_cache(tmp_path/'allbad', cache_dir=tmp_path/'c', on_error='skip', progress=False)
    with pytest.raises(GalaxyDataError, match='source not found'): load_cache(tmp_path/'nowhere', cache_dir=tmp_path/'c')
    with pytest.raises(ValueError, match='on_error'): load_cache('demo:10', on_error='ignore')
    assert not (tmp_path/'c').exists() or not any((tmp_path/'c').iterdir())


def test_failed_build_keeps_earlier_cache(tmp_path):
    folder = tmp_path/'imgs'
    folder.mkdir()
    for i in range(3): galaxy_jpeg(folder/f'g{i}.jpg')
    good = load_cache(folder, size=32, cache_dir=tmp_path/'cache', progress=False)
    before = np.array(good.images)
    (folder/'g9.jpg').write_bytes(jpeg_bytes()[:200])  # the folder changes and now holds a truncated file
    with pytest.raises(GalaxyDataError, match='g9.jpg'):
        load_cache(folder, size=32, cache_dir=tmp_path/'cache', progress=False)
    assert [p.name for p in (tmp_path/'cache').iterdir()] == [good.path.name]  # no new, no temporary folder
    assert (GalaxyCache(good.path).images == before).all()


def test_unexpected_reader_error_is_reported_not_crashing(tmp_path):
    "A reader that fails in an unforeseen way is reported with the item's name, under the same policy."
    def read(i, size):
        if i == 1: raise RuntimeError('decoder exploded')
        return Decoded(np.full((3, size, size), i, np.uint8))
    src = lambda: Source('flaky', pd.DataFrame({'id': ['a', 'b', 'c'], 'filename': ['a.x', 'b.x', 'c.x']}), read)
    with pytest.raises(GalaxyDataError, match=r'b\.x: unexpected RuntimeError: decoder exploded'):
        load_cache(src(), size=16, cache_dir=tmp_path/'cache', progress=False)
    cache = load_cache(src(), size=16, cache_dir=tmp_path/'cache', on_error='skip', progress=False)
    assert cache.catalog.id.tolist() == ['a', 'c'] and cache.images[1].max() == 2 and cache.skipped == [('b.x', 'unexpected RuntimeError: decoder exploded')]


# ---- Galaxy Zoo: Hubble, laid out as galaxy-datasets does ----

CLASSES = ('smooth', 'edge-on', 'spiral', 'barred spiral', 'artifact', 'none', 'few votes')


@pytest.fixture(scope='module')
def gzh_root(tmp_path_factory) -> Path:
    return fake_gz_hubble(tmp_path_factory.mktemp('gzh')/'root', CLASSES)


def test_mini_gz_hubble_layout_and_classes(gzh_root, tmp_path):
    train = pd.read_parquet(gzh_root/GZH_CATALOGS['train'])
    assert len(gzh_vote_cols()) == 34 and set(gzh_vote_cols() + ['filename', 'ra', 'dec']) <= set(train.columns)
    assert all(Image.open(gzh_root/'images'/f).size == (424, 424) for f in train.filename)
    cache = load_cache(f'gz_hubble:{gzh_root}', size=48, cache_dir=tmp_path, progress=False)
    cat = cache.catalog
    assert cat.label.tolist() == [c if c != 'few votes' else 'none' for c in CLASSES]
    assert cat.clean.tolist() == [c not in ('none', 'few votes') for c in CLASSES]
    assert cat.split.tolist() == ['train'] * 5 + ['test'] * 2
    assert cat.edge_on.tolist() == [c == 'edge-on' for c in CLASSES]
    assert cat.bar.tolist() == [c == 'barred spiral' for c in CLASSES]
    fr = cat['smooth-or-featured-hubble_smooth_fraction']
    assert np.allclose(fr, cat['smooth-or-featured-hubble_smooth'] / cat['smooth-or-featured-hubble_total-votes'])
    assert cat['bar-hubble_yes_fraction'].isna().tolist() == [c not in ('spiral', 'barred spiral') for c in CLASSES]
    assert cache.images.shape == (7, 3, 48, 48) and cache.images.mean() > 1
    b = galaxy_dls(cache, bs=4, device='cpu').one_batch()
    assert isinstance(b, tuple) and b[0].dtype == torch.uint8 and b[0].shape == (4, 3, 48, 48)


@pytest.mark.parametrize('value,words', [(np.nan, 'NaN or non-numeric vote count'), (-3, 'negative vote count')])
def test_gz_hubble_bad_votes(gzh_root, tmp_path, value, words):
    root = tmp_path/'root'
    shutil.copytree(gzh_root, root)
    train = pd.read_parquet(root/GZH_CATALOGS['train'])
    train['bar-hubble_yes'] = train['bar-hubble_yes'].astype(float)
    train.loc[2, 'bar-hubble_yes'] = value
    train.to_parquet(root/GZH_CATALOGS['train'], index=False)
    bad = train.filename[2]
    with pytest.raises(GalaxyDataError, match=f"{bad}: {words}.*'bar-hubble_yes'"):
        load_cache(f'gz_hubble:{root}', size=32, cache_dir=tmp_path/'c', progress=False)
    cache = load_cache(f'gz_hubble:{root}', size=32, cache_dir=tmp_path/'c', on_error='skip', progress=False)
    assert len(cache) == len(CLASSES) - 1 and bad not in cache.catalog.filename.tolist()
    assert cache.skipped[0][0] == bad


def test_gz_hubble_missing_files(gzh_root, tmp_path):
    root = tmp_path/'root'
    shutil.copytree(gzh_root, root)
    (root/GZH_CATALOGS['test']).unlink()
    with pytest.raises(GalaxyDataError, match=r'missing: hubble_ortho_test_catalog\.parquet.*download=True'):
        load_cache(f'gz_hubble:{root}', cache_dir=tmp_path/'c')
    shutil.rmtree(root/'images')
    with pytest.raises(GalaxyDataError, match=r'images/\*\.jpg'): load_cache(f'gz_hubble:{root}', cache_dir=tmp_path/'c')
    shutil.copytree(gzh_root, tmp_path/'r2')
    (tmp_path/'r2'/'images'/'10000001.jpg').unlink()  # one image gone: that galaxy's problem only
    with pytest.raises(GalaxyDataError, match='10000001.jpg: file not found'):
        load_cache(f'gz_hubble:{tmp_path/"r2"}', size=32, cache_dir=tmp_path/'c', progress=False)
    assert len(load_cache(f'gz_hubble:{tmp_path/"r2"}', size=32, cache_dir=tmp_path/'c', on_error='skip', progress=False)) == 6


# ---- the embedded default ----

def test_demo_deterministic_with_truth(tiny_cache, tmp_path):
    again = load_cache('demo:40', size=32, cache_dir=tmp_path/'other', progress=False)
    assert (np.asarray(again.images) == np.asarray(tiny_cache.images)).all()
    other = load_cache('demo:40:1', size=32, cache_dir=tmp_path/'other', progress=False)
    assert not (np.asarray(other.images) == np.asarray(tiny_cache.images)).all()
    cat = tiny_cache.catalog
    assert set(cat.origin) == {'synthetic', 'hdf'} and cat.has_truth.tolist() == (cat.origin == 'synthetic').tolist()
    syn = cat.has_truth.to_numpy()
    assert tiny_cache.truth is not None and tiny_cache.truth[~syn].max() == 0
    noisy = np.abs(tiny_cache.images[syn].astype(int) - tiny_cache.truth[syn]).mean((1, 2, 3)) / 255
    assert (noisy > 0).all() and np.corrcoef(noisy, cat.noise_std[syn])[0, 1] > 0.5  # recorded noise is the real noise
    assert {'sky_e', 'read_e', 'display_peak_e', 'stretch_beta', 'noise_std', 'label'} <= set(cat.columns)


def test_dls_and_figure(tiny_cache):
    dls = galaxy_dls(tiny_cache, bs=8, device='cpu')
    batches = list(dls.train)
    assert len(batches) == 4 and all(b[0].shape == (8, 3, 32, 32) and b[0].dtype == torch.uint8 for b in batches)
    assert isinstance(dls.train.dataset.images, np.memmap)  # read from disk, not copied into RAM
    fig = show_galaxies(tiny_cache, 8, seed=2)
    assert len([a for a in fig.axes if a.images]) == 8 and all(a.get_title() for a in fig.axes if a.images)


def test_no_validation_batch_of_one(tiny_cache):
    "NT-Xent needs two galaxies per batch: a lone trailing validation galaxy is dropped, any larger remainder kept."
    n_valid = len(galaxy_dls(tiny_cache, bs=len(tiny_cache), device='cpu').valid.dataset)
    for bs in (n_valid - 1, n_valid - 2):
        sizes = [len(b[0]) for b in galaxy_dls(tiny_cache, bs=bs, device='cpu').valid]
        assert min(sizes) >= 2 and sum(sizes) == (n_valid - 1 if n_valid % bs == 1 else n_valid)



# ---- the one train/valid split ----

def test_split_idxs_honours_catalogue_split_else_seeded():
    cat = pd.DataFrame({'split': ['train', 'valid', 'train', 'test', 'validation', 'train', 'TRAIN']})
    train, valid = split_idxs(cat)
    assert train.tolist() == [0, 2, 5, 6] and valid.tolist() == [1, 3, 4]  # valid, validation and test are held out
    plain = pd.DataFrame({'x': range(50)})
    train, valid = split_idxs(plain, valid_pct=0.2, seed=3)
    assert len(valid) == 10 and sorted([*train, *valid]) == list(range(50))
    assert all(np.array_equal(a, b) for a, b in zip(split_idxs(plain, 0.2, 3), (train, valid)))  # seeded: the same rows
    assert not np.array_equal(split_idxs(plain, 0.2, 4)[1], valid)
    only_train = plain.assign(split='train')  # a split column without valid rows: the seeded split
    assert np.array_equal(split_idxs(only_train, 0.2, 3)[1], valid)


def test_galaxy_dls_holds_out_split_idxs_rows(tiny_cache, gzh_root, tmp_path):
    "galaxy_dls's validation set is exactly split_idxs's valid rows, whether the catalogue has a split or not."
    gzh = load_cache(f'gz_hubble:{gzh_root}', size=32, cache_dir=tmp_path, progress=False)
    for cache in (tiny_cache, gzh):
        for seed in (0, 42):
            dls = galaxy_dls(cache, bs=4, valid_pct=0.25, seed=seed, device='cpu')
            train, valid = split_idxs(cache.catalog, 0.25, seed)
            assert np.array_equal(dls.valid.dataset.idxs, valid) and np.array_equal(dls.train.dataset.idxs, train)
    assert split_idxs(gzh.catalog)[1].tolist() == [5, 6]  # GZ:H's test catalogue


# ---- the three real sets beside the project ----

def test_shared_sdss_spirals(shared_data, tmp_path):
    cache = load_cache(shared_data/'sdss-spirals', size=32, cache_dir=tmp_path, progress=False)
    assert len(cache) == 2000 and not cache.skipped and set(cache.catalog.spiral) == {0, 1}
    dls = galaxy_dls(cache, bs=100, device='cpu')
    assert len(dls.train.dataset) == 1400 and len(dls.valid.dataset) == 600  # the set's own split
    im = cache.images[:200].astype(float)
    assert im[:, :, 12:20, 12:20].mean() > 2 * im[:, :, :4].mean()  # centred galaxies, decoded the right way up


def test_shared_decals_rings(shared_data, tmp_path):
    cache = load_cache(shared_data/'decals-rings'/'catalog.csv', size=32, cache_dir=tmp_path, progress=False)
    assert len(cache) == 470 and not cache.skipped
    assert {'id_str', 'ring', 'disk-edge-on_no_fraction'} <= set(cache.catalog.columns)
    assert (cache.catalog.id == cache.catalog.id_str).all()


def test_shared_cosmos_stamps(shared_data, tmp_path):
    cat = shared_data/'cosmos-stamps'/'real_galaxy_catalog_26_extension_example.fits'
    cache = load_cache(cat, size=32, cache_dir=tmp_path, progress=False)
    assert len(cache) == 100 and not cache.skipped and {'IDENT', 'MAG', 'GAL_HDU'} <= set(cache.catalog.columns)
    im = cache.images.astype(int)
    assert (im[:, 0] == im[:, 2]).all()  # one band, replicated
    centre, edge = im[:, 0, 12:20, 12:20].mean(), im[:, 0, :4].mean()
    assert centre > 2 * edge  # galaxies centred and bright against the stretched sky
    stamps = load_cache(shared_data/'cosmos-stamps'/'real_galaxy_images_extension.fits', size=32, cache_dir=tmp_path,
                        progress=False)
    assert (np.asarray(stamps.images) == np.asarray(cache.images)).all()  # same HDUs, same pixels
