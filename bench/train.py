"""Training images/s: the fastai `Learner` of `gzh.train` against a bare PyTorch loop doing the same work, same run.

Both train the same `GalaxyUNet` with `GalaxyLoss` on views drawn by `make_views` from the same uint8 batches of the
same `DataLoader`, with Adam(W) and a one-cycle schedule, in float32 on the CPU (or the autocast the Learner picks on
a GPU, which the bare loop mirrors). Only the training steps are timed; the ratio Learner / bare is the figure
(target >= 0.95). The two are interleaved `--repeats` times and the best of each is kept, so a busy machine hurts
both alike.

With `--speedups` it times instead the Learner's own speed-ups, `galaxy_learner(channels_last=True)` and
`galaxy_learner(compile=True)`, alone and together, against the plain Learner, interleaved the same way; the ratio
to the plain Learner is the figure.

    .venv/bin/python bench/train.py [--sizes 64 128] [--bs 32] [--steps 12] [--repeats 3] [--width 32] [--data SOURCE] [--speedups]
"""
import argparse, time

import torch

from gzh.data import load_cache, galaxy_dls
from gzh.losses import GalaxyLoss
from gzh.noise_masks import make_views
from gzh.train import autocast_dtype, galaxy_learner
from gzh.unet import GalaxyUNet
from fastai.callback.core import Callback, CancelFitException # after gzh, whose warning filters cover fastai's import


class StepTimer(Callback):
    "Time `n` training steps after `warmup` steps, then stop the fit."
    order = 100
    def __init__(self, n:int, warmup:int=2): self.n, self.warmup = n, warmup
    def after_batch(self):
        if not self.training: return
        if self.train_iter == self.warmup: self.t0 = time.perf_counter()
        if self.train_iter == self.warmup + self.n: self.seconds = time.perf_counter() - self.t0; raise CancelFitException()


def learner_seconds(dls, width:int, n:int, **kw)->float:
    torch.manual_seed(0)
    learn = galaxy_learner(dls, GalaxyUNet(width=width), checkpoint=None, log=None, progress=False, **kw)
    timer = StepTimer(n)
    with learn.no_logging(): learn.fit_one_cycle(10, 3e-3, cbs=[timer]) # no epoch table: the fit stops mid-epoch
    return timer.seconds


def bare_seconds(dls, width:int, n:int, warmup:int=2)->float:
    torch.manual_seed(0)
    model, loss_func = GalaxyUNet(width=width).to(dls.device), GalaxyLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.99), weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=10 * len(dls.train), pct_start=0.25)
    dtype = autocast_dtype(dls.device)
    scaler = torch.amp.GradScaler(enabled=dtype == torch.float16)
    model.train()
    for i, (x,) in enumerate(dls.train):
        if i == warmup: t0 = time.perf_counter()
        if i == warmup + n: return time.perf_counter() - t0
        v = make_views(x.to(dls.device))
        with torch.autocast(dls.device.type, dtype=dtype, enabled=dtype is not None):
            loss = loss_func(model(v.noisy), v.clean, v.mask)
        scaler.scale(loss).backward(); scaler.step(opt); scaler.update(); opt.zero_grad(); sched.step()
    raise ValueError(f'need at least {warmup + n + 1} batches per epoch; got {len(dls.train)}')


SPEEDUPS = {'plain': {}, 'channels-last': dict(channels_last=True), 'compile': dict(compile=True),
            'channels-last + compile': dict(channels_last=True, compile=True)}


def best_seconds(timers:dict, repeats:int)->dict:
    "The best seconds of each named timer, run in turn `repeats` times so a busy machine hurts them alike."
    best = dict.fromkeys(timers, float('inf'))
    for _ in range(repeats):
        for k, f in timers.items(): best[k] = min(best[k], f())
    return best


def report_speedups(dls, a, size:int):
    best = best_seconds({k: (lambda kw=kw: learner_seconds(dls, a.width, a.steps, **kw)) for k, kw in SPEEDUPS.items()}, a.repeats)
    for k, s in best.items():
        print(f"{size:>4} px: Learner {k:<24} {a.steps * a.bs / s:7.1f} img/s | ratio to plain {best['plain'] / s:.2f}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--sizes', type=int, nargs='+', default=[64, 128])
    p.add_argument('--bs', type=int, default=32)
    p.add_argument('--steps', type=int, default=12)
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--width', type=int, default=32)
    p.add_argument('--data', help="a gzh SOURCE (default: enough of the embedded 'demo' galaxies)")
    p.add_argument('--speedups', action='store_true', help='time channels-last and torch.compile against the plain Learner')
    a = p.parse_args()
    n_img = a.bs * (a.steps + 4) * 5 // 4 + a.bs # enough batches for warm-up and timing, with a 20% hold-out
    where = torch.cuda.get_device_name() if torch.cuda.is_available() else f'CPU, {torch.get_num_threads()} threads'
    print(f'torch {torch.__version__}, {where}, batch {a.bs} (x2 views), width {a.width}, {a.steps} timed steps')
    for size in a.sizes:
        dls = galaxy_dls(load_cache(a.data or f'demo:{n_img}', size=size, progress=False), bs=a.bs)
        if a.speedups: report_speedups(dls, a, size); continue
        best = best_seconds(dict(bare=lambda: bare_seconds(dls, a.width, a.steps), learner=lambda: learner_seconds(dls, a.width, a.steps)), a.repeats)
        ips = {k: a.steps * a.bs / s for k, s in best.items()}
        print(f"{size:>4} px: fastai Learner {ips['learner']:7.1f} img/s | bare PyTorch loop {ips['bare']:7.1f} img/s | "
              f"ratio {ips['learner'] / ips['bare']:.3f} (target >= 0.95)")


if __name__ == '__main__': main()
