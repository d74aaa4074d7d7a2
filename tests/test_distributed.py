"""Data-parallel training in two CPU processes (gloo) with fastai's distributed support, launched by `torchrun`."""
import json, os, subprocess, sys
from pathlib import Path
import pytest, torch
from fastai.torch_core import set_seed
from gzh.data import load_cache, galaxy_dls
from gzh.train import load_model, read_history
from gzh.unet import GalaxyUNet
from ddp_worker import image_keys

WORKER = Path(__file__).with_name('ddp_worker.py')

def launch(out:Path, epochs:int, mode:str='')->list[dict]:
    "Run tests/ddp_worker.py in two processes; each rank's weights and image keys. Their output goes to OUT/stdout.txt."
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
           str(WORKER), str(out), str(epochs), *([mode] if mode else [])]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert r.returncode == 0, r.stderr[-4000:]
    (out/'stdout.txt').write_text(r.stdout)
    return [json.loads((out/f'rank{i}.json').read_text()) for i in range(2)]

@pytest.fixture(scope='module')
def two_epochs(tmp_path_factory):
    out = tmp_path_factory.mktemp('ddp')
    return out, launch(out, 2)

def test_ranks_end_with_the_same_trained_weights(two_epochs):
    out, (r0, r1) = two_epochs
    assert r0['weights'] == r1['weights']
    set_seed(42, reproducible=True)
    init = torch.cat([p.flatten() for p in GalaxyUNet(width=8, depth=2).state_dict().values() if p.is_floating_point()])
    assert not torch.allclose(init, torch.tensor(r0['weights']))
    assert load_model(out/'model.pth').config['width'] == 8

def test_ranks_split_each_epoch(two_epochs):
    _, (r0, r1) = two_epochs
    dl = galaxy_dls(load_cache('demo:80', size=24, progress=False), bs=8, seed=42).train
    train = set(image_keys(torch.from_numpy(dl.dataset.images[dl.dataset.idxs])))
    assert len(r0['keys']) == len(r1['keys']) > 0
    half = len(r0['keys']) // 2
    for epoch in (slice(None, half), slice(half, None)):
        k0, k1 = set(r0['keys'][epoch]), set(r1['keys'][epoch])
        assert len(k0 & k1) <= 1 # at most the one galaxy fastai repeats to pad an odd count
        assert k0 | k1 <= train and len(k0 | k1) >= 0.8 * len(train)

def test_one_process_writes_the_log(two_epochs):
    out, _ = two_epochs
    lines = (out/'history.csv').read_text().splitlines()
    assert len(lines) == 3 and lines[0].startswith('epoch,')
    assert read_history(out/'history.csv').epoch.tolist() == [0, 1]
    printed = [l.split() for l in (out/'stdout.txt').read_text().splitlines()]
    summary = [l for l in printed if l[:1] == ['device']]
    assert len(summary) == 1 and '2 processes' in ' '.join(summary[0]) # one summary, from rank 0, naming both
    assert [l[0] for l in printed if l[:1] in (['epoch'], ['noisy'], ['0'], ['1'])] == ['epoch', 'noisy', '0', '1'] # one table

def test_stopped_and_resumed_run_matches_uninterrupted(two_epochs, tmp_path):
    _, (full, _) = two_epochs
    first = launch(tmp_path, 2, 'stop-after-1')
    assert len(read_history(tmp_path/'history.csv')) == 1 and first[0]['weights'] != full['weights']
    resumed = launch(tmp_path, 2, 'resume')
    assert resumed[0]['weights'] == resumed[1]['weights'] == full['weights']
