"Training: checkpoints and exact resume after SIGKILL, the NaN guard, saved models, precision, metrics, the epoch table."
import contextlib, io, json, os, signal, subprocess, sys, textwrap, warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from gzh.losses import GalaxyLoss, RECON_METRICS
from gzh.train import (Checkpoint, atomic_save, autocast_dtype, fit_galaxies, galaxy_metrics, load_checkpoint, load_model,
                       pair_top1, precision_callback, read_history, save_model)
from gzh.unet import GalaxyUNet
from galaxies import write_galaxies

SIZE, TINY = 32, dict(width=8, depth=2, proj_dim=16)


@pytest.fixture(scope='module')
def tiny_source(tmp_path_factory)->Path:
    "A folder of 48 small galaxy images."
    return write_galaxies(tmp_path_factory.mktemp('galaxies')/'images')


@pytest.fixture(scope='module')
def tiny_cache(tiny_source, tmp_path_factory):
    from gzh.data import load_cache
    return load_cache(str(tiny_source), size=SIZE, cache_dir=tmp_path_factory.mktemp('cache'), progress=False)


def run_kw(**kw): return {**dict(size=SIZE, epochs=3, bs=8, model_kw=TINY, progress=False), **kw}


# ---- fault test: SIGKILL part-way, resume, same weights as an uninterrupted run -------------------------------------
TRAIN_SCRIPT = textwrap.dedent('''
    import os, signal, sys, torch
    torch.set_num_threads(1)
    from fastai.callback.core import Callback
    from gzh.data import load_cache
    from gzh.train import fit_galaxies
    source, cache_dir, out, kill_at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    class Kill(Callback):
        "SIGKILL this process after training step `kill_at`."
        order = 100
        def after_batch(self):
            if self.training and self.train_iter == kill_at: os.kill(os.getpid(), signal.SIGKILL)
    cache = load_cache(source, size=%d, cache_dir=cache_dir, progress=False)
    fit_galaxies(cache=cache, out=out, resume=True, every=3, cbs=[Kill()] if kill_at else None, **%r)
''' % (SIZE, dict(epochs=3, bs=8, model_kw=TINY, progress=False)))


def train_proc(script:Path, source, cache_dir, out, kill_at=0):
    return subprocess.run([sys.executable, str(script), str(source), str(cache_dir), str(out), str(kill_at)],
                          capture_output=True, text=True, timeout=300)


def state(path): return torch.load(path, weights_only=True)['state_dict']


def test_sigkill_then_resume_matches_uninterrupted(tiny_source, tmp_path):
    script, cache_dir = tmp_path/'train.py', tmp_path/'cache'
    script.write_text(TRAIN_SCRIPT)
    ref = train_proc(script, tiny_source, cache_dir, tmp_path/'ref')
    assert ref.returncode == 0, ref.stderr
    # killed in epoch 1 (4 steps per epoch), one step after the step-6 checkpoint: resume is mid-epoch
    killed = train_proc(script, tiny_source, cache_dir, tmp_path/'run', kill_at=7)
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path/'run'/'model.pth').exists()
    ck = load_checkpoint(tmp_path/'run'/'checkpoint.pth')
    assert (ck['epoch'], ck['iter'], ck['train_iter']) == (1, 2, 6)
    # a half-written checkpoint (what a kill during a save leaves) sits beside it and must be ignored
    (tmp_path/'run'/'.checkpoint.pth.999.tmp').write_bytes(b'PK\x03\x04 truncated')
    resumed = train_proc(script, tiny_source, cache_dir, tmp_path/'run')
    assert resumed.returncode == 0, resumed.stderr
    a, b = state(tmp_path/'ref'/'model.pth'), state(tmp_path/'run'/'model.pth')
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = [l.split(',')[0] for l in (tmp_path/'run'/'history.csv').read_text().splitlines()]
    assert [r for r in rows if r != 'epoch'] == ['0', '1', '2'] # each epoch logged once, none of the skipped ones
    assert read_history(tmp_path/'run'/'history.csv').shape[0] == 3


def test_truncated_checkpoint_is_refused(tmp_path):
    f = tmp_path/'checkpoint.pth'
    atomic_save(dict(format='gzh-checkpoint', x=torch.zeros(1000)), f)
    f.write_bytes(f.read_bytes()[:300])
    with pytest.raises(ValueError, match=r'checkpoint\.pth is not a readable gzh checkpoint'): load_checkpoint(f)


def test_failed_save_keeps_the_previous_file(tmp_path):
    f = tmp_path/'checkpoint.pth'
    atomic_save(dict(format='gzh-checkpoint', step=1), f)
    with pytest.raises(Exception): atomic_save(dict(format='gzh-checkpoint', step=2, bad=lambda: 0), f) # fails mid-pickle
    assert load_checkpoint(f)['step'] == 1
    assert [p.name for p in tmp_path.iterdir()] == ['checkpoint.pth'] # no temporary file left behind


# ---- NaN guard ------------------------------------------------------------------------------------------------------
def test_nan_guard_stops_and_keeps_last_good_checkpoint(tiny_cache, tmp_path):
    from fastai.callback.core import Callback
    class Poison(Callback):
        "Make the loss of training step 6 (epoch 1) NaN."
        order = 12
        def after_loss(self):
            if self.training and self.train_iter == 6: self.learn.loss = self.learn.loss_grad = self.loss * float('nan')
    with pytest.raises(FloatingPointError, match='non-finite loss'):
        fit_galaxies(cache=tiny_cache, out=tmp_path, cbs=[Poison()], **run_kw(epochs=2))
    ck = load_checkpoint(tmp_path/'checkpoint.pth')
    assert (ck['epoch'], ck['iter']) == (1, 0) # end of epoch 0: nothing after the bad step was saved
    assert all(v.isfinite().all() for v in ck['model'].values() if v.is_floating_point())
    assert not (tmp_path/'model.pth').exists()


# ---- a normal run: metrics, log, no warnings on CPU, lr_find --------------------------------------------------------
@pytest.fixture(scope='module')
def trained(tiny_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp('run')
    with warnings.catch_warnings(record=True) as w, contextlib.redirect_stdout(io.StringIO()) as log:
        warnings.simplefilter('always')
        learn = fit_galaxies(cache=tiny_cache, out=out, **run_kw(epochs=2))
    return learn, out, w, log.getvalue()


def test_run_logs_every_term_and_metric(trained):
    learn, out, w, _ = trained
    h = read_history(out/'history.csv')
    assert list(h.epoch) == [0, 1]
    for c in ['train_loss', 'valid_loss', 'loss_fg', 'loss_bg', 'loss_contrastive', 'top1'] + \
             [f'{s}_{m}_{r}' for s in ('recon', 'noisy') for m in ('ssim', 'psnr') for r in ('fg', 'bg')]:
        assert c in h and h[c].notna().all(), c
    assert ((h.top1 >= 0) & (h.top1 <= 1)).all()
    assert (h.noisy_ssim_fg.diff().dropna() == 0).all() # seeded validation views: the baseline is the same each epoch


def test_run_prints_summary_and_epoch_table(trained):
    "A header, the noisy-input baseline once, one row per epoch; the summary before it; nothing wider than 100 columns."
    learn, out, w, log = trained
    lines = log.splitlines()
    assert [l.split()[0] for l in lines[:5]] == ['device', 'data', 'cache', 'model', 'training']
    header = next(i for i, l in enumerate(lines) if l.split()[:3] == ['epoch', 'train', 'valid'])
    assert [l.split()[0] for l in lines[header + 1:]] == ['noisy', '0', '1']
    assert all(len(l) <= 100 for l in lines)
    h = read_history(out/'history.csv') # the table's numbers are the CSV's, rounded
    assert float(lines[header + 3].split()[2]) == pytest.approx(h.valid_loss.iloc[1], abs=1e-4)


def test_precision_follows_the_training_device(trained):
    "CPU: float32, no autocast, no warnings. CUDA: bf16 autocast where the GPU has it, fp16 with a grad scaler elsewhere."
    learn, out, w, _ = trained
    assert [str(x.message) for x in w] == []
    amp = [cb for cb in learn.cbs if type(cb).__name__ == 'MixedPrecision']
    if learn.dls.device.type == 'cuda': assert amp[0].amp_mode.value == ('bf16' if torch.cuda.is_bf16_supported() else 'fp16')
    else: assert amp == []
    assert all(p.dtype == torch.float32 for p in learn.model.parameters()) # master weights stay float32


def test_compile_on_a_machine_without_a_gpu_logs_nothing_to_act_on():
    "A CUDA build of torch without a GPU logs 'No CUDA runtime is found' when `torch.compile` loads its C++ tools; gzh drops that line, and only it."
    import logging
    log = logging.getLogger('torch.utils.cpp_extension')
    record = lambda msg: log.makeRecord(log.name, logging.WARNING, __file__, 0, msg, ("/usr/local",), None)
    assert not log.filter(record("No CUDA runtime is found, using CUDA_HOME='%s'"))
    assert log.filter(record("Error checking compiler version for %s"))


def test_lr_find_leaves_no_checkpoint(tiny_cache, tmp_path):
    from gzh.data import galaxy_dls
    from gzh.train import galaxy_learner
    learn = galaxy_learner(galaxy_dls(tiny_cache, bs=8), GalaxyUNet(**TINY), path=tmp_path, progress=False)
    sug = learn.lr_find(num_it=8, show_plot=False)
    assert sug.valley > 0
    assert not (tmp_path/'checkpoint.pth').exists()


def test_precision_follows_device(monkeypatch):
    assert precision_callback('cpu') is None and autocast_dtype('cpu') is None
    assert autocast_dtype(torch.device('cpu')) is None
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda *a, **k: True)
    assert precision_callback('cuda').amp_mode.value == 'bf16'
    assert autocast_dtype('cuda') == torch.bfloat16
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda *a, **k: False)
    assert precision_callback('cuda').amp_mode.value == 'fp16'
    assert autocast_dtype('cuda:0') == torch.float16


def test_metrics_are_the_declared_names():
    "The logged metrics come from `GalaxyLoss.TERMS` and `RECON_METRICS`, not from running the loss."
    names = [m.name for m in galaxy_metrics(GalaxyLoss())]
    assert names == [f'loss_{t}' for t in GalaxyLoss.TERMS] + list(RECON_METRICS) + ['top1']
    assert [m.name for m in galaxy_metrics(torch.nn.MSELoss())] == list(RECON_METRICS) + ['top1'] # a loss without TERMS


def test_pair_top1():
    z = torch.randn(6, 16)
    assert pair_top1(torch.cat([z, z + 0.01 * torch.randn(6, 16)])).tolist() == [1.] * 12
    assert pair_top1(torch.cat([z, z.roll(1, 0)])).sum() < 12
    with pytest.raises(ValueError): pair_top1(torch.randn(5, 16)) # a stacked batch has an even number of rows


# ---- saved models ---------------------------------------------------------------------------------------------------
def test_save_load_round_trip(tmp_path):
    m = GalaxyUNet(**TINY).eval()
    save_model(m, tmp_path/'m.pth', size=SIZE)
    m2 = load_model(tmp_path/'m.pth', device='cpu') # the default is the GPU when there is one
    x = torch.rand(2, 3, SIZE, SIZE)
    assert m2.config == m.config and m2.meta == {'size': SIZE}
    assert torch.equal(m(x)[0], m2(x)[0])


def test_load_model_rejects_other_files(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.pth'): load_model(tmp_path/'nope.pth')
    (tmp_path/'garbage.pth').write_bytes(b'not a model at all')
    with pytest.raises(ValueError, match=r'garbage\.pth is not a gzh model file'): load_model(tmp_path/'garbage.pth')
    torch.save(GalaxyUNet(**TINY).state_dict(), tmp_path/'bare.pth') # a plain state_dict: no config
    with pytest.raises(ValueError, match=r'bare\.pth is not a gzh model file'): load_model(tmp_path/'bare.pth')


@pytest.fixture(scope='module')
def bench():
    "bench/morphology.py as a module."
    import importlib.util
    spec = importlib.util.spec_from_file_location('bench_morphology', Path(__file__).parents[1]/'bench'/'morphology.py')
    module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)
    return module


def test_stock_simclr_trains_in_the_galaxy_loop(bench, tiny_cache, tmp_path):
    "The embedding baseline of bench/morphology.py (`StockSimCLR`, NT-Xent alone) trains with the same learner and views, and embeds like a GalaxyUNet."
    from gzh.embed import embed
    from gzh.cluster import load_embeddings
    bench.set_seed(0, reproducible=True)
    before = bench.StockSimCLR().encoder.conv1.weight.detach()  # the weights stock_simclr starts from, seeded alike
    learn = bench.stock_simclr(tiny_cache, epochs=1, bs=8, seed=0, out=tmp_path)
    model = learn.model
    assert not torch.equal(before, model.encoder.conv1.weight) and np.isfinite(learn.recorder.losses[-1].item())
    X, meta = load_embeddings(embed(model, tiny_cache, device='cpu'))
    assert X.shape == (len(tiny_cache.images), 512) and np.isfinite(X).all()


def test_nnclr_support_set_fills_from_training_batches_only(tiny_cache, tmp_path):
    "With `GalaxyLoss(support=...)` the fit runs NNCLR: the support set holds the last training projections, capped, and validation adds none."
    loss = GalaxyLoss(support=12)
    learn = fit_galaxies(cache=tiny_cache, out=tmp_path, loss_func=loss, objective='reconstruct', **run_kw(epochs=1))
    queue = loss.contrastive.queue
    assert queue.shape == (12, TINY['proj_dim']) and torch.allclose(queue.norm(dim=1), torch.ones(12))
    before = queue.clone()
    valid_loss = learn.validate()[0]
    assert torch.equal(loss.contrastive.queue, before) and np.isfinite(valid_loss)


def test_supervised_ceiling_learns_the_labels(bench, tiny_source, tmp_path):
    "bench/morphology.py --supervised: the GalaxyUNet's encoder and a class head trained on a catalogue's labels, the rarer class weighted up."
    import pandas as pd
    from PIL import Image
    from gzh.data import load_cache
    files = sorted(tiny_source.glob('*.png'))
    extent = np.array([(np.asarray(Image.open(f), np.float32).mean(-1) > 60).sum() for f in files])
    label = np.where(extent > np.quantile(extent, 0.7), 'large', 'small')  # unbalanced, like the real classes
    split = np.where(np.arange(len(files)) % 3 == 0, 'valid', 'train')
    pd.DataFrame(dict(filename=[str(f) for f in files], split=split, size_class=label)).to_csv(tmp_path/'labelled.csv', index=False)
    cache = load_cache(tmp_path/'labelled.csv', size=SIZE, cache_dir=tmp_path/'cache', image_root=tiny_source, progress=False)
    learn = bench.fit_on_labels(cache, 'size_class', None, epochs=10, bs=8, lr=3e-3, seed=0, model_kw=TINY)
    weight = dict(zip(['large', 'small'], learn.loss_func.func.weight.tolist()))
    assert weight['large'] > 2 * weight['small']  # 'large' is the class in 30 % of the galaxies
    assert isinstance(learn.model.unet, GalaxyUNet) and learn.model.unet.config == GalaxyUNet(**TINY).config
    assert learn.validate()[1] >= 0.85  # balanced accuracy of the held-out galaxies
