"gzh.cluster on embeddings with known structure: scores, meaning, probes on the training split, reports, bad input, and no torch."
import json, subprocess, sys
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_blobs

from gzh.cluster import EMB, agreement, cluster_report, cluster_scores, kmeans_sweep, load_embeddings, reduce, run_hdbscan
from gzh.data import galaxy_dls, load_cache
from gzh.embed import embed
from gzh.probes import probe, probe_split
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
    tr, va = probe_split(meta)
    assert set(meta['split'].iloc[va]) == {'valid'} and len(tr) + len(va) == len(meta)
    p = probe(X, meta['label'], tr, va)
    assert p['knn_acc'] > 0.98 and p['linear_acc'] > 0.98 and p['chance'] < 0.3
    assert probe(X, meta['votes_fraction'], tr, va)['linear_r2'] > 0.9
    assert probe(X, np.random.default_rng(0).normal(size=len(y)), tr, va)['linear_r2'] < 0.1


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


def test_report_with_images_adds_baseline_and_pictures(stand_in_cache, tmp_path):
    df = embed(GalaxyUNet(width=4, depth=2, proj_dim=8), stand_in_cache)
    rep = cluster_report(df, out_dir=tmp_path, cache=stand_in_cache, maps=('tsne',), ks=range(2, 4), min_cluster_size=5)
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


def held_out(out_dir)->np.ndarray:
    "Rows the report's probes held out, as written in clusters.parquet."
    return np.flatnonzero(pd.read_parquet(out_dir / 'clusters.parquet')['probe_split'] == 'valid')


def test_probes_hold_out_what_training_held_out(tmp_path):
    cache = load_cache('demo:60', size=16, cache_dir=tmp_path / 'cache', progress=False)
    rep = cluster_report(embed(GalaxyUNet(width=4, depth=2, proj_dim=8), cache), out_dir=tmp_path / 'rep', maps=(),
                         ks=range(2, 4), min_cluster_size=5, sample_max=40)  # a subsample keeps each galaxy's side
    valid = galaxy_dls(cache, bs=8).valid.dataset.idxs
    assert len(valid) == 12 and np.array_equal(held_out(tmp_path / 'rep'), valid)
    labelled = cache.catalog['label'].iloc[valid] != 'unlabelled'
    sub = np.sort(np.random.default_rng(0).choice(60, 40, replace=False))
    assert rep['meaning']['label']['probe']['embedding']['n_valid'] == np.isin(valid[labelled.values], sub).sum()


def test_probes_hold_out_a_catalogue_test_split(blobs, tmp_path):
    X, _, meta = blobs
    split = np.where(np.arange(len(meta)) % 4 == 0, 'test', 'train')  # a release's split, as on GZ:H
    images = np.zeros((len(meta), 3, 8, 8), np.uint8)
    valid = galaxy_dls(SimpleNamespace(catalog=meta.assign(split=split), images=images), bs=8).valid.dataset.idxs
    rep = cluster_report(table(X, meta.assign(split=split)), out_dir=tmp_path, maps=(), ks=range(2, 8))
    assert np.array_equal(held_out(tmp_path), valid) and np.array_equal(valid, np.arange(0, len(meta), 4))
    assert rep['meaning']['label']['probe']['embedding']['n_valid'] == len(valid)


def test_import_cluster_leaves_torch_out():
    code = "import sys, gzh.cluster, gzh.probes; assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)[:5]"
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.mark.slow
def test_umap_reduction_and_map(blobs):
    X, y, _ = blobs
    Z = reduce(X, 'umap', 8)
    assert Z.shape == (len(y), 8)
    assert agreement(run_hdbscan(Z)['labels'], y)['ari'] > 0.9
