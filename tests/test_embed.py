"gzh.embed: features and colour of every galaxy, in memory or as parquet shards, and the model's mode restored."
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from gzh.cluster import EMB, load_embeddings
from gzh.embed import colour_index, embed, encode_batch
from gzh.unet import GalaxyUNet


def test_shard_round_trip(stand_in_cache, tmp_path):
    model = GalaxyUNet(width=4, depth=2, proj_dim=8)
    df = embed(model, stand_in_cache, bs=8)
    path = embed(model, stand_in_cache, bs=8, out=tmp_path / 'emb.parquet', shard_rows=16)
    assert sorted(p.name for p in path.glob('*')) == ['part-00000.parquet', 'part-00001.parquet', 'part-00002.parquet']
    X, meta = load_embeddings(path)
    np.testing.assert_allclose(X, df.filter(like=EMB).to_numpy(), atol=1e-5)
    assert X.shape == (40, model.emb_dim) and meta.columns.tolist() == ['id', 'spiral', 'colour']
    assert meta['id'].tolist() == stand_in_cache.catalog['id'].tolist()
    assert model.training  # embed restores the mode it found
    with pytest.raises(FileExistsError, match='already holds embedding shards'): embed(model, stand_in_cache, out=path)
    embed(model, stand_in_cache, 'projection', out=path, overwrite=True)
    assert load_embeddings(path)[0].shape == (40, 8)


def test_encode_batch_reads_uint8_and_matches_the_encoder(stand_in_cache):
    model = GalaxyUNet(width=4, depth=2, proj_dim=8).eval()
    f, c = encode_batch(model, stand_in_cache.images[:6])
    with torch.no_grad(): want = model.encode(torch.from_numpy(stand_in_cache.images[:6]).float() / 255)[0].numpy()
    np.testing.assert_allclose(f, want, atol=1e-5)
    np.testing.assert_allclose(c, colour_index(torch.from_numpy(stand_in_cache.images[:6])).numpy(), atol=1e-6)


def test_colour_index_tells_red_from_blue():
    x = torch.full((2, 3, 8, 8), 0.05)
    x[0, 0, 2:6, 2:6], x[1, 2, 2:6, 2:6] = 0.8, 0.8  # a red and a blue square
    ci = colour_index(x, (x.amax(1, keepdim=True) > 0.5).float())
    assert ci[0] > 0.8 and ci[1] < -0.8


def test_bad_features_are_refused_before_anything_is_written(tmp_path):
    meta = pd.DataFrame(dict(id=['a', 'b']))
    with pytest.raises(ValueError, match="one of 'embedding', 'multiscale', 'projection'"):
        embed(GalaxyUNet(width=4, depth=2), SimpleNamespace(images=np.zeros((2, 3, 8, 8), np.uint8), catalog=meta), 'bottleneck',
              out=tmp_path / 'emb')
    assert not (tmp_path / 'emb').exists()
