"""Issue 15, training: a run folder is never silently replaced, the checkpoint records its run and refuses another,
arguments are checked before any work, a finished run can be extended and a model fine-tuned, devices are checked."""
import shutil
from pathlib import Path

import pytest
import torch
from fastai.callback.core import Callback

import gzh.train as train
from gzh.data import load_cache
from gzh.train import fit_galaxies, load_checkpoint, load_model, read_history
from galaxies import write_galaxies

SIZE, TINY = 32, dict(width=8, depth=2, proj_dim=16)


def kw(**k): return {**dict(size=SIZE, epochs=1, bs=8, model_kw=TINY, progress=False), **k}


@pytest.fixture(scope='module')
def sources(tmp_path_factory):
    "Two folders of small galaxy images (different files) and their caches, in a cache folder of their own."
    root = tmp_path_factory.mktemp('data')
    a, b = write_galaxies(root/'a', n=40), write_galaxies(root/'b', n=40, seed=1)
    caches = {s: load_cache(str(s), size=SIZE, cache_dir=root/'cache', progress=False) for s in (a, b)}
    return a, b, caches


@pytest.fixture
def no_cache(monkeypatch):
    "Make building or loading a cache fail the test: refusals must come before it."
    def boom(*a, **k): raise AssertionError('the cache was loaded before the refusal')
    monkeypatch.setattr(train, 'load_cache', boom)


def one_line(excinfo)->str:
    msg = str(excinfo.value)
    assert '\n' not in msg and len(msg) < 400, msg
    return msg


def files(folder:Path)->dict: return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


class Crash(Callback):
    "Raise after training step `at`."
    def __init__(self, at): self.at = at
    def after_batch(self):
        if self.training and self.train_iter == self.at: raise RuntimeError('simulated crash')


@pytest.fixture
def finished(sources, tmp_path):
    "A finished 1-epoch run in tmp_path/run."
    a, _, caches = sources
    fit_galaxies(cache=caches[a], out=tmp_path/'run', **kw())
    return tmp_path/'run'


# ---- case 1 -----------------------------------------------------------------------------------------------------------
def test_case1_a_folder_holding_a_run_is_refused(sources, finished, no_cache):
    "case 1: `out` holding model.pth/checkpoint.pth/history.csv needs resume or overwrite; refused in one line, before any data is read."
    a, _, _ = sources
    before = files(finished)
    with pytest.raises(FileExistsError) as e: fit_galaxies(str(a), out=finished, **kw())
    msg = one_line(e)
    assert 'already holds a run (model.pth, checkpoint.pth, history.csv)' in msg
    assert 'resume=True (--resume)' in msg and 'overwrite=True (--overwrite)' in msg
    assert files(finished) == before
    with pytest.raises(ValueError, match='not both'): fit_galaxies(str(a), out=finished, resume=True, overwrite=True, **kw())


def test_case1_failed_overwrite_loses_nothing(sources, finished):
    "case 1: overwrite replaces the old run only once the new model is complete: a run that fails leaves it as it was."
    a, _, caches = sources
    before = files(finished)
    with pytest.raises(RuntimeError, match='simulated crash'):
        fit_galaxies(cache=caches[a], out=finished, overwrite=True, cbs=[Crash(2)], **kw(epochs=2))
    assert files(finished) == before
    assert [p.name for p in finished.parent.iterdir()] == ['run'] # no temporary run folder left beside it


def test_case1_overwrite_replaces_the_run_when_complete(sources, finished):
    "case 1: a successful overwrite swaps the new run in: its model, its checkpoint and a history of its own epochs only."
    a, _, caches = sources
    old = files(finished)
    learn = fit_galaxies(cache=caches[a], out=finished, overwrite=True, seed=1, **kw(epochs=2))
    assert Path(learn.path) == finished
    assert files(finished)['model.pth'] != old['model.pth']
    assert load_checkpoint(finished/'checkpoint.pth')['n_epoch'] == 2
    assert read_history(finished/'history.csv').epoch.tolist() == [0, 1]
    assert [p.name for p in finished.parent.iterdir()] == ['run']


# ---- case 5 -----------------------------------------------------------------------------------------------------------
def test_case5_checkpoint_and_model_record_their_run(sources, finished):
    "case 5: the checkpoint records size, crop, width, depth, source, fingerprint and batch size; the model's meta too (bs for evaluate)."
    a, _, caches = sources
    run = load_checkpoint(finished/'checkpoint.pth')['run']
    assert {k: run[k] for k in ('size', 'crop', 'bs', 'width', 'depth')} == dict(size=SIZE, crop=1., bs=8, width=8, depth=2)
    assert run['source'] == caches[a].source and run['fingerprint']
    meta = load_model(finished/'model.pth', device='cpu').meta
    assert {k: meta[k] for k in ('size', 'crop', 'bs', 'source', 'fingerprint')} == {k: run[k] for k in ('size', 'crop', 'bs', 'source', 'fingerprint')}


def test_case5_resume_at_another_size_or_batch_size_is_refused(sources, tmp_path, no_cache):
    "case 5: `--resume` at another size (or batch size) refuses in one line naming what differs, before the cache is built."
    a, _, caches = sources
    with pytest.raises(RuntimeError): fit_galaxies(cache=caches[a], out=tmp_path/'run', cbs=[Crash(5)], **kw(epochs=2))
    before = files(tmp_path/'run')
    with pytest.raises(ValueError) as e: fit_galaxies(str(a), out=tmp_path/'run', resume=True, **kw(epochs=2, size=16))
    assert 'is from a run with size=32, not size=16' in one_line(e) and '--size 32' in str(e.value)
    with pytest.raises(ValueError) as e: fit_galaxies(str(a), out=tmp_path/'run', resume=True, **kw(epochs=2, bs=4))
    assert 'bs=8, not bs=4' in one_line(e) and '--batch-size 8' in str(e.value)
    assert files(tmp_path/'run') == before


def test_case5_resume_on_other_data_is_refused(sources, tmp_path):
    "case 5: resuming on another source (other files) is refused in one line naming the source, before any weight is loaded."
    a, b, caches = sources
    with pytest.raises(RuntimeError): fit_galaxies(cache=caches[a], out=tmp_path/'run', cbs=[Crash(5)], **kw(epochs=2))
    before = files(tmp_path/'run')
    with pytest.raises(ValueError) as e: fit_galaxies(cache=caches[b], out=tmp_path/'run', resume=True, **kw(epochs=2))
    msg = one_line(e)
    assert f"source={caches[a].source!r}" in msg and 'fingerprint=' in msg and f'--data {caches[a].source}' in msg
    assert files(tmp_path/'run') == before


# ---- case 6 -----------------------------------------------------------------------------------------------------------
def test_case6_zero_epochs_is_refused(sources, tmp_path, no_cache):
    "case 6: `--epochs 0` is refused in one line before any work; no untrained model.pth is written."
    a, _, _ = sources
    with pytest.raises(ValueError) as e: fit_galaxies(str(a), out=tmp_path/'run', **kw(epochs=0))
    assert one_line(e) == 'epochs (--epochs) must be a whole number of at least 1, not 0'
    assert not (tmp_path/'run').exists()


# ---- cases 9 and 19 ---------------------------------------------------------------------------------------------------
def test_case9_a_valid_split_of_one_galaxy_is_refused(tmp_path):
    "case 9: a source whose valid split holds one galaxy is refused in one line before training (no NaN metrics)."
    cache = load_cache('demo:6', size=SIZE, cache_dir=tmp_path/'cache', progress=False) # 5 train, 1 valid
    with pytest.raises(ValueError) as e: fit_galaxies(cache=cache, out=tmp_path/'run', **kw(bs=4))
    assert f'the valid split of {cache.source} holds 1 galaxy; it needs at least 2' in one_line(e)
    assert not any((tmp_path/'run').glob('*'))


@pytest.mark.parametrize('size, message', [(7, 'size must be a multiple of 4 between 4 and 2048, not 7'),
                                           (100000, 'size must be a multiple of 4 between 4 and 2048, not 100000'),
                                           (0, 'size must be a multiple of 4 between 4 and 2048, not 0')])
def test_case19_bad_size_is_refused_before_the_cache(sources, tmp_path, no_cache, size, message):
    "case 19: a size the model cannot take (with its depth) is refused before the cache is built, in one line."
    with pytest.raises(ValueError) as e: fit_galaxies(str(sources[0]), out=tmp_path/'run', **kw(size=size))
    assert one_line(e) == message
    with pytest.raises(ValueError, match='multiple of 8'): fit_galaxies(str(sources[0]), out=tmp_path/'run', **kw(size=36, model_kw=dict(depth=3)))


def test_case19_batch_size_one_is_refused_before_the_cache(sources, tmp_path, no_cache):
    "case 19: `--batch-size 1` is refused before the cache is built, in one line."
    with pytest.raises(ValueError) as e: fit_galaxies(str(sources[0]), out=tmp_path/'run', **kw(bs=1))
    assert one_line(e).startswith('bs (--batch-size) must be at least 2, not 1')


# ---- case 11 ----------------------------------------------------------------------------------------------------------
def test_case11_resume_with_another_width_is_one_line(sources, finished, no_cache):
    "case 11: `--resume` with another width: one line from the recorded config, before load_state_dict (no size-mismatch dump)."
    with pytest.raises(ValueError) as e: fit_galaxies(str(sources[0]), out=finished, resume=True, **kw(epochs=2, model_kw={**TINY, 'width': 16}))
    msg = one_line(e)
    assert 'width=8, not width=16' in msg and '--width 8' in msg and 'size mismatch' not in msg


def test_case11_old_checkpoint_of_another_shape_is_one_line(sources, finished):
    "case 11: a checkpoint that records no run but holds weights of another shape is refused in one line too."
    a, _, caches = sources
    ck = load_checkpoint(finished/'checkpoint.pth'); del ck['run']
    torch.save(ck, finished/'checkpoint.pth')
    with pytest.raises(ValueError) as e:
        fit_galaxies(cache=caches[a], out=finished, resume=True, **kw(model_kw={**TINY, 'width': 16}))
    msg = one_line(e)
    assert 'holds a model of another shape' in msg and 'size mismatch' not in msg


# ---- case 24 ----------------------------------------------------------------------------------------------------------
def test_case24_resume_with_more_epochs_extends_a_finished_run(sources, finished):
    "case 24: `--resume --epochs N+M` extends a finished run by a new one-cycle of M epochs, numbered on from N."
    a, _, caches = sources
    old = load_model(finished/'model.pth', device='cpu').state_dict()
    fit_galaxies(cache=caches[a], out=finished, resume=True, **kw(epochs=3))
    assert read_history(finished/'history.csv').epoch.tolist() == [0, 1, 2]
    ck = load_checkpoint(finished/'checkpoint.pth')
    assert (ck['n_epoch'], ck['epoch'], ck['cycle_start']) == (3, 3, 1)
    new = load_model(finished/'model.pth', device='cpu')
    assert new.meta['epochs'] == 3 and not all(torch.equal(old[k], v) for k, v in new.state_dict().items())
    with pytest.raises(ValueError) as e: fit_galaxies(cache=caches[a], out=finished, resume=True, **kw(epochs=2))
    assert 'holds a finished 3-epoch run' in one_line(e) and '--epochs 4' in str(e.value)


def test_case24_an_interrupted_extension_resumes_exactly(sources, finished, tmp_path):
    "case 24: an extension killed part-way resumes on the same schedule: same weights as an uninterrupted extension."
    a, _, caches = sources
    shutil.copytree(finished, tmp_path/'copy')
    ref = fit_galaxies(cache=caches[a], out=finished, resume=True, **kw(epochs=3))
    with pytest.raises(RuntimeError): fit_galaxies(cache=caches[a], out=tmp_path/'copy', resume=True, every=1, cbs=[Crash(2)], **kw(epochs=3))
    run = fit_galaxies(cache=caches[a], out=tmp_path/'copy', resume=True, **kw(epochs=3))
    for (k, x), y in zip(ref.model.state_dict().items(), run.model.state_dict().values()): assert torch.equal(x, y), k


def test_case24_init_starts_from_a_model_files_weights(sources, finished, tmp_path):
    "case 24: `init` (CLI `--init MODEL`) starts a new run from a model file's architecture and weights."
    a, _, caches = sources
    class Grab(Callback):
        order = -20
        def before_fit(self): self.w = {k: v.detach().clone().cpu() for k, v in self.model.state_dict().items()}
    grab = Grab()
    fit_galaxies(cache=caches[a], out=tmp_path/'tuned', init=finished/'model.pth', cbs=[grab], **kw(model_kw=None))
    init = load_model(finished/'model.pth', device='cpu')
    assert all(torch.equal(grab.w[k], v) for k, v in init.state_dict().items())
    assert load_model(tmp_path/'tuned'/'model.pth', device='cpu').config == init.config
    with pytest.raises(ValueError) as e:
        fit_galaxies(cache=caches[a], out=tmp_path/'other', init=finished/'model.pth', **kw(model_kw=dict(width=16)))
    assert 'is a model with width=8, not width=16' in one_line(e)


# ---- devices ----------------------------------------------------------------------------------------------------------
def test_check_device_refuses_a_missing_gpu(sources, finished, tmp_path, monkeypatch, no_cache):
    "case 13 (library side): `device='cuda'` without a GPU is one line, in fit_galaxies (before any work) and load_model."
    from gzh.train import check_device
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    msg = '--device cuda: no CUDA GPU here (torch.cuda.is_available() is False); use --device cpu'
    with pytest.raises(ValueError) as e: check_device('cuda')
    assert one_line(e) == msg
    with pytest.raises(ValueError, match='no CUDA GPU here'): fit_galaxies(str(sources[0]), out=tmp_path/'run', device='cuda', **kw())
    with pytest.raises(ValueError, match='no CUDA GPU here'): load_model(finished/'model.pth', device='cuda')
    with pytest.raises(ValueError, match='not a device'): check_device('gpu')
    assert check_device('cpu') == torch.device('cpu')
