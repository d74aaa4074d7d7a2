"gzh.cluster on embeddings with known structure: scores, meaning, probes, shards, reports, and bad input."
import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_blobs

from gzh.cluster import (EMB, agreement, cluster_report, cluster_scores, embed, kmeans_sweep, load_embeddings, probe,
                         reduce, run_hdbscan, train_valid)
from gzh.unet import GalaxyUNet


@pytest.fixture(scope='module')
def blobs():
    "Six well-separated groups in 256 dimensions, with a class label, a vote-fraction-like value and a colour that follows the groups."
    X, y = make_blobs(1500, n_features=256, centers=6, cluster_std=2.0, random_state=1)
    rng = np.random.default_rng(1)
    meta = pd.DataFrame(dict(id=[f'g{i}' for i in range(len(y))], label=[f'class {c}' for c in y],
                             votes_fraction=y / 6 + rng.normal(0, 0.03, len(y)), colour=y + rng.normal(0, 0.1, len(y)),
                             split=np.where(rng.random(len(y)) < 0.8, 'train', 'valid')))
    return X.astype(np.float32), y, meta


def table(X, meta): return pd.concat([meta, pd.DataFrame(X, columns=[f'{EMB}{j}' for j in range(X.shape[1])])], axis=1)


@pytest.fixture
def tiny_cache():
    "A 40-galaxy stand-in for a GalaxyCache: uint8 images and an aligned catalogue."
    rng = np.random.default_rng(0)
    return SimpleNamespace(images=rng.integers(0, 256, (40, 3, 16, 16), dtype=np.uint8),
                           catalog=pd.DataFrame(dict(id=[f'g{i}' for i in range(40)], spiral=[0, 1] * 20)))


def test_separated_blobs_give_ari_near_one_and_shuffled_labels_near_zero(blobs):
    X, y, _ = blobs
    Z = reduce(X)
    h = run_hdbscan(Z)
    assert agreement(h['labels'], y)['ari'] > 0.95
    sweep, parts = kmeans_sweep(Z, range(2, 9))
    assert int(sweep['silhouette'].idxmax()) == 6
    assert agreement(parts[6], y)['ari'] > 0.99 and agreement(parts[6], y)['purity'] > 0.99
    shuffled = np.random.default_rng(0).permutation(y)
    assert abs(agreement(parts[6], shuffled)['ari']) < 0.02 and agreement(parts[6], shuffled)['nmi'] < 0.02
    all_noise = agreement(np.full(len(y), -1), y)
    assert np.isnan(all_noise['ari']) and all_noise['noise_frac'] == 1 and all_noise['n'] == 0


def test_scores_report_noise_beside_silhouette(blobs):
    X, y, _ = blobs
    Z = reduce(X)
    labels = y.copy(); labels[:150] = -1
    s = cluster_scores(Z, labels)
    assert s['noise_frac'] == pytest.approx(0.1) and s['n_clusters'] == 6
    assert s['silhouette'] > 0.5 and s['davies_bouldin'] < 1
    assert cluster_scores(Z, np.random.default_rng(0).integers(0, 6, len(y)))['silhouette'] < 0.05


def test_probes_use_the_split_column_and_beat_chance(blobs):
    X, y, meta = blobs
    tr, va = train_valid(meta)
    assert set(meta['split'].iloc[va]) == {'valid'} and len(tr) + len(va) == len(meta)
    p = probe(X, meta['label'], tr, va)
    assert p['knn_acc'] > 0.98 and p['linear_acc'] > 0.98 and p['chance'] < 0.3
    assert probe(X, meta['votes_fraction'], tr, va)['linear_r2'] > 0.9
    assert probe(X, np.random.default_rng(0).normal(size=len(y)), tr, va)['linear_r2'] < 0.1


def test_shard_round_trip(tiny_cache, tmp_path):
    model = GalaxyUNet(width=4, depth=2, proj_dim=8)
    df = embed(model, tiny_cache, bs=8)
    path = embed(model, tiny_cache, bs=8, out=tmp_path / 'emb.parquet', shard_rows=16)
    assert sorted(p.name for p in path.glob('*')) == ['part-00000.parquet', 'part-00001.parquet', 'part-00002.parquet']
    X, meta = load_embeddings(path)
    np.testing.assert_allclose(X, df.filter(like=EMB).to_numpy(), atol=1e-5)
    assert X.shape == (40, model.emb_dim) and meta.columns.tolist() == ['id', 'spiral', 'colour']
    assert meta['id'].tolist() == tiny_cache.catalog['id'].tolist()
    assert model.training  # embed restores the mode it found
    with pytest.raises(FileExistsError, match='already holds embedding shards'): embed(model, tiny_cache, out=path)
    embed(model, tiny_cache, 'projection', out=path, overwrite=True)
    assert load_embeddings(path)[0].shape == (40, 8)


def test_report_finds_the_structure_and_writes_files(blobs, tmp_path):
    X, y, meta = blobs
    rep = cluster_report(table(X, meta), out_dir=tmp_path, maps=(), ks=range(2, 9))
    saved = json.loads((tmp_path / 'report.json').read_text())
    assert saved['kmeans']['best_k'] == 6 and saved['n'] == len(y)
    assert set(saved['meaning']) == {'label', 'votes_fraction'}
    assert rep['meaning']['label']['kmeans_k6']['ari'] > 0.99
    assert rep['meaning']['votes_fraction']['kmeans']['eta2'] > 0.9
    assert rep['colour']['probe']['embedding']['linear_r2'] > 0.9
    clusters = pd.read_parquet(tmp_path / 'clusters.parquet')
    assert clusters['id'].tolist() == meta['id'].tolist() and {'hdbscan', 'hdbscan_outlier', 'kmeans'} <= set(clusters)
    assert (tmp_path / 'kmeans_sweep.png').is_file()


def test_report_with_images_adds_baseline_and_pictures(tiny_cache, tmp_path):
    df = embed(GalaxyUNet(width=4, depth=2, proj_dim=8), tiny_cache)
    rep = cluster_report(df, out_dir=tmp_path, cache=tiny_cache, maps=('tsne',), ks=range(2, 4), min_cluster_size=5)
    assert set(rep['meaning']['spiral']['probe']) == {'embedding', 'pixel_pca'}
    for f in ['map_tsne.png', 'grid_hdbscan.png', 'grid_kmeans.png', 'neighbours.png', 'anomalies.png']:
        assert (tmp_path / f).is_file(), f


@pytest.mark.parametrize('bad, msg', [
    (np.zeros((0, 8)), 'no rows'),
    (np.array([[0., 1.], [np.nan, 1.], [np.inf, 0.]]), '2 of 3 rows hold NaN or inf'),
])
def test_bad_embeddings_are_named(bad, msg):
    with pytest.raises(ValueError, match=msg): reduce(bad)


def test_bad_tables_and_label_columns(blobs, tmp_path):
    X, _, meta = blobs
    with pytest.raises(ValueError, match=r"unknown label column\(s\) \['ring'\]"): cluster_report(table(X, meta), ['ring'])
    with pytest.raises(FileNotFoundError, match='missing.parquet: no such'): cluster_report(tmp_path / 'missing.parquet')
    meta.to_parquet(tmp_path / 'meta.parquet')
    with pytest.raises(ValueError, match=r"meta.parquet: no 'emb_\*' columns"): load_embeddings(tmp_path / 'meta.parquet')
    nan = table(X[:50].copy(), meta[:50]); nan.loc[3, f'{EMB}0'] = np.nan
    nan.to_parquet(tmp_path / 'nan.parquet')
    with pytest.raises(ValueError, match=r'nan.parquet: 1 of 50 rows hold NaN'): cluster_report(tmp_path / 'nan.parquet')
    (tmp_path / 'empty.parquet').mkdir()
    with pytest.raises(ValueError, match='holds no part-\\*.parquet shards'): load_embeddings(tmp_path / 'empty.parquet')
    with pytest.raises(ValueError, match="'embedding' or 'projection'"):
        embed(GalaxyUNet(width=4, depth=2), SimpleNamespace(images=np.zeros((2, 3, 8, 8), np.uint8), catalog=meta[:2]), 'bottleneck')


@pytest.mark.slow
def test_umap_reduction_and_map(blobs):
    X, y, _ = blobs
    Z = reduce(X, 'umap', 8)
    assert Z.shape == (len(y), 8)
    assert agreement(run_hdbscan(Z)['labels'], y)['ari'] > 0.9
