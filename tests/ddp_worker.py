"""One process of a two-process CPU (gloo) training run, started by tests/test_distributed.py through torchrun.

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/ddp_worker.py OUT EPOCHS [resume|stop-after-1]

Trains `fit_galaxies` on a small demo cache and writes OUT/rank{R}.json: the rank's final weights and a key per
training image it was given, so the test can check that DDP kept the ranks in step and that they split the data.
"""
import json, sys
from pathlib import Path
import torch
from fastai.callback.core import Callback, CancelFitException
from fastai.torch_core import rank_distrib
from gzh.data import load_cache
from gzh.train import fit_galaxies

def image_keys(x:torch.Tensor)->list[int]:
    "A number per uint8 image, equal for equal images."
    w = torch.arange(1, x[0].numel() + 1, dtype=torch.int64)
    return (x.flatten(1).long() * w).sum(1).tolist()

class RecordImages(Callback):
    "Keep the keys of the training images this rank is given, before the views replace the batch."
    order = -10
    def before_fit(self): self.keys = []
    def before_batch(self):
        if self.training: self.keys += image_keys(self.xb[0])

class StopAfterFirstEpoch(Callback):
    "Stop cleanly once epoch 0 and its checkpoint are done."
    order = 50
    def after_epoch(self): raise CancelFitException()

def main(out:str, epochs:int, mode:str=''):
    cache = load_cache('demo:80', size=24, progress=False)
    rec = RecordImages()
    cbs = [rec] + ([StopAfterFirstEpoch()] if mode == 'stop-after-1' else [])
    learn = fit_galaxies(cache=cache, epochs=epochs, bs=8, out=out, resume=mode == 'resume', progress=False,
                         model_kw=dict(width=8, depth=2), cbs=cbs)
    weights = torch.cat([p.detach().flatten() for p in learn.model.state_dict().values() if p.is_floating_point()])
    Path(out, f'rank{rank_distrib()}.json').write_text(json.dumps(dict(weights=weights.tolist(), keys=rec.keys)))

if __name__ == '__main__': main(sys.argv[1], int(sys.argv[2]), *sys.argv[3:])
