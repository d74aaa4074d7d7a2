"Issue 15, embeddings and clusters: no shards lost, one-line refusals, skipped label columns, `id_str` kept, atomic report files."
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure
from sklearn.datasets import make_blobs

from gzh.cluster import EMB, cluster_report, load_embeddings
from gzh.embed import embed
from gzh.unet import GalaxyUNet


def one_line(e:pytest.ExceptionInfo)->str:
    msg = str(e.value)
    assert '\n' not in msg, msg
    return msg


@pytest.fixture
def model(): return GalaxyUNet(width=4, depth=2, proj_dim=8)


@pytest.fixture
def shards(model, stand_in_cache, tmp_path):
    "A folder of three shards written by `embed`, and the ids they hold."
    path = embed(model, stand_in_cache, bs=8, out=tmp_path / 'emb', shard_rows=16)
    return path, sorted(p.name for p in path.iterdir())


@pytest.fixture
def blob_table():
    "An embeddings table of 300 galaxies in six groups, with a class label, `id` and `id_str`."
    X, y = make_blobs(300, n_features=32, centers=6, cluster_std=1.0, random_state=0)
    meta = pd.DataFrame(dict(id=[f'g{i}' for i in range(len(y))], id_str=[f'J{i:06d}' for i in range(len(y))],
                             label=[f'class {c}' for c in y]))
    return pd.concat([meta, pd.DataFrame(X, columns=[f'{EMB}{j}' for j in range(X.shape[1])])], axis=1)


def test_embed_overwrite_keeps_the_old_shards_when_the_new_run_fails(model, stand_in_cache, shards):
    "case 2: `embed --overwrite` replaces the shards only once the new embedding is complete; a failure leaves them intact."
    path, names = shards
    before = pd.read_parquet(path)
    cache = SimpleNamespace(images=_Images(stand_in_cache.images, fail_from=16), catalog=stand_in_cache.catalog)
    with pytest.raises(OSError, match='disk read failed'): embed(model, cache, bs=8, out=path, shard_rows=8, overwrite=True)
    assert sorted(p.name for p in path.iterdir()) == names
    pd.testing.assert_frame_equal(pd.read_parquet(path), before)
    assert sorted(p.name for p in path.parent.iterdir()) == ['emb']  # no temporary folder left beside it
    with pytest.raises(ValueError): embed(model, stand_in_cache, bs=0, out=path, overwrite=True)  # the example
    pd.testing.assert_frame_equal(pd.read_parquet(path), before)


class _Images:
    "uint8 images that fail to read from row `fail_from` on, like a disk that gives out mid-run."
    def __init__(self, images, fail_from): self.images, self.fail_from = images, fail_from
    def __len__(self): return len(self.images)
    def __getitem__(self, i):
        if i.start >= self.fail_from: raise OSError('disk read failed')
        return self.images[i]


def test_existing_shards_without_overwrite_give_one_line_for_python_and_cli(model, stand_in_cache, shards):
    "case 12: shards already in --out without overwrite: one-line FileExistsError naming both overwrite=True and --overwrite."
    path, names = shards
    with pytest.raises(FileExistsError) as e: embed(model, stand_in_cache, out=path)
    assert one_line(e) == f"{path}: already holds embedding shards; pass overwrite=True (--overwrite) to replace them"
    (path.parent / 'run').mkdir(); (path.parent / 'run' / 'model.pth').touch()
    with pytest.raises(FileExistsError) as e: embed(model, stand_in_cache, out=path.parent / 'run', overwrite=True)
    assert 'not embedding shards (model.pth)' in one_line(e)  # a folder that is not embed's own is never replaced
    assert (path.parent / 'run' / 'model.pth').is_file()


def test_a_label_column_with_no_usable_rows_is_skipped_with_a_note(blob_table, tmp_path):
    "case 17: a label column with no usable rows (all NaN, all unknown, or one class) is skipped with a note, not a crash."
    table = blob_table.assign(ring=np.nan, bar='unknown', spiral='yes', smooth_fraction=np.nan)
    rep = cluster_report(table, ['label', 'ring', 'bar', 'spiral', 'smooth_fraction'], out_dir=tmp_path, maps=(), ks=range(2, 8))
    assert rep['meaning']['ring'] == rep['meaning']['bar'] == rep['meaning']['smooth_fraction'] == {'skipped': 'no usable rows'}
    assert rep['meaning']['spiral'] == {'skipped': 'one class only (yes)'}
    assert rep['meaning']['label']['probe']['embedding']['knn_acc'] > 0.9
    held_out = blob_table['label'].where(pd.read_parquet(tmp_path / 'clusters.parquet')['probe_split'] == 'valid')
    rep = cluster_report(blob_table.assign(label=held_out), ['label'], maps=(), ks=range(2, 8))
    assert rep['meaning']['label']['probe']['embedding'] == {'skipped': 'no usable rows among the training galaxies'}


def test_batch_size_below_one_is_refused_before_any_work(model, stand_in_cache, tmp_path):
    "case 20: embed with batch size 0 (or -1, 2.5) is refused in one line before anything is read or written."
    for bs in (0, -1, 2.5):
        with pytest.raises(ValueError) as e: embed(model, stand_in_cache, bs=bs, out=tmp_path / 'emb')
        assert one_line(e) == f"embed: the batch size must be a whole number of at least 1, not {bs!r}"
    assert not (tmp_path / 'emb').exists()


def test_cluster_with_fewer_than_16_rows_is_refused_in_one_line(blob_table, tmp_path):
    "case 20: cluster with fewer than 16 galaxies: one-line ValueError naming the count and the minimum."
    blob_table[:10].to_parquet(tmp_path / 'few.parquet')
    with pytest.raises(ValueError) as e: cluster_report(tmp_path / 'few.parquet', out_dir=tmp_path / 'rep')
    assert one_line(e) == f"{tmp_path / 'few.parquet'}: 10 galaxies; clustering needs at least 16"
    assert not (tmp_path / 'rep').exists()
    rep = cluster_report(blob_table[:16], maps=('tsne',), out_dir=tmp_path / 'rep16')  # the minimum itself works
    assert rep['n'] == 16 and (tmp_path / 'rep16' / 'clusters.parquet').is_file()


def test_outputs_carry_id_str(model, stand_in_cache, blob_table, tmp_path):
    "case 27: with `id_str` in the catalogue, the embeddings table and clusters.parquet carry it beside `id`."
    cat = stand_in_cache.catalog.assign(id_str=[f'J{i:06d}' for i in range(40)])
    path = embed(model, SimpleNamespace(images=stand_in_cache.images, catalog=cat), bs=8, out=tmp_path / 'emb')
    assert load_embeddings(path)[1]['id_str'].tolist() == cat['id_str'].tolist()
    cluster_report(blob_table, ['label'], out_dir=tmp_path / 'rep', maps=(), ks=range(2, 8))
    clusters = pd.read_parquet(tmp_path / 'rep' / 'clusters.parquet')
    assert clusters[['id', 'id_str']].equals(blob_table[['id', 'id_str']])


def test_report_files_are_written_whole_or_not_at_all(blob_table, tmp_path, monkeypatch):
    "case 30: report.json, clusters.parquet and the figures go through atomic_output: a failed write leaves the last ones intact."
    out = tmp_path / 'rep'
    cluster_report(blob_table, ['label'], out_dir=out, maps=(), ks=range(2, 8))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert {'report.json', 'clusters.parquet', 'kmeans_sweep.png'} <= set(before)
    def half_written(self, path, *args, **kwargs):
        with open(path, 'wb') as f: f.write(b'half a file')
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(pd.DataFrame, 'to_parquet', half_written)
    with pytest.raises(OSError, match='No space left'): cluster_report(blob_table, ['label'], out_dir=out, maps=(), ks=range(2, 8))
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(after) == set(before) and all(after[k] == before[k] for k in ('clusters.parquet', 'report.json'))
    monkeypatch.undo()
    monkeypatch.setattr(Figure, 'savefig', half_written)
    with pytest.raises(OSError, match='No space left'): cluster_report(blob_table, ['label'], out_dir=out, maps=(), ks=range(2, 8))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # and no temporary file is left


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the refusal on a machine without a GPU')
def test_embed_refuses_a_missing_gpu_before_any_work(model, stand_in_cache, tmp_path):
    "case 28 (embed's side): embed's device goes through check_device: --device cuda without a GPU is one line, nothing written."
    with pytest.raises(ValueError) as e: embed(model, stand_in_cache, out=tmp_path / 'emb', device='cuda')
    assert 'no CUDA GPU here' in one_line(e) and not (tmp_path / 'emb').exists()


def test_embed_runs_on_the_device_asked_and_restores_the_model(model, stand_in_cache):
    "case 28 (embed's side): `device` picks where the model runs; its device and mode are restored afterwards."
    model.train()
    df = embed(model, stand_in_cache, bs=16, device='cpu')
    assert len(df) == 40 and model.training and next(model.parameters()).device.type == 'cpu'
