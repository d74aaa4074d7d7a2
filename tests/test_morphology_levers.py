"The morphology levers on real galaxies: crop='auto' framing, several catalogues as one source, and the shipped model."
import numpy as np
import pandas as pd
import pytest

from gzh.cli import main
from gzh.data import galaxy_source, half_light_radius, load_cache
from gzh.train import load_model, pretrained_models


def few_rows(shared_data, name:str, n:int, tmp_path):
    "A catalogue of the first `n` galaxies of a shared set, its images where they are (`image_root`)."
    root = shared_data/name
    cat = pd.read_csv(root/'catalog.csv').head(n)
    cat.assign(filename=[str(root/'images'/f) for f in cat.filename]).to_csv(tmp_path/f'{name}.csv', index=False)
    return tmp_path/f'{name}.csv', root


def test_auto_crop_evens_out_galaxy_sizes(shared_data, tmp_path):
    cat, root = few_rows(shared_data, 'gz1-sdss', 40, tmp_path)
    kw = dict(size=64, cache_dir=tmp_path/'cache', image_root=root, progress=False)
    fixed, framed = load_cache(cat, crop=0.35, **kw), load_cache(cat, crop='auto', **kw)
    assert framed.crop == 'auto' and framed.catalog['crop'].between(0.15, 1).all()
    def spread(c): # interquartile range of the galaxies' half-light radii, relative to their median
        q1, q2, q3 = np.nanpercentile([half_light_radius(im) for im in c.images], [25, 50, 75])
        return (q3 - q1) / q2
    assert spread(framed) < 0.5 * spread(fixed), (spread(framed), spread(fixed))


def test_union_of_catalogues(shared_data, tmp_path):
    (a, ra), (b, rb) = few_rows(shared_data, 'gz1-sdss', 12, tmp_path), few_rows(shared_data, 'sdss-spirals', 8, tmp_path)
    src = galaxy_source([a, b], image_root=shared_data)
    assert len(src.catalog) == 20 and src.catalog['source'].tolist() == [str(a)] * 12 + [str(b)] * 8
    assert set(src.catalog['split']) <= {'train', 'valid'}
    both = load_cache([a, b], size=16, cache_dir=tmp_path/'cache', image_root=shared_data, progress=False)
    assert len(both) == 20 and both.catalog['morphology'].notna().sum() == 12 and both.catalog['spiral'].notna().sum() == 8


def test_shipped_model_loads_by_name():
    assert 'gz1-sdss64' in pretrained_models()
    m = load_model('gz1-sdss64', device='cpu')
    assert m.meta['size'] == 64 and m.meta['source'].endswith('catalog.csv')
    with pytest.raises(FileNotFoundError, match='the models that ship with gzh: .*gz1-sdss64'):
        load_model('no-such-model', device='cpu')


def test_embed_with_the_shipped_model(tmp_path, capsys):
    assert main(['embed', 'gz1-sdss64', '--data', 'demo:24', '--out', str(tmp_path/'emb')]) in (None, 0)
    emb = pd.read_parquet(tmp_path/'emb')
    assert len(emb) == 24 and emb.filter(like='emb_').shape[1] == load_model('gz1-sdss64', device='cpu').emb_dim
