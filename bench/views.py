"""Views on the device vs per-sample views in DataLoader workers, as the original built them.

Both pipelines make, from the same decoded 128 px galaxies, two geometric + colour views, their Poisson + Gaussian
noisy versions and their Otsu + morphology masks:
- per-sample (the original's way): torchvision v2 transforms on PIL images, numpy noise and OpenCV masks per image,
  in a DataLoader with 2 workers (the original's setting on Colab's two cores);
- batched (gzh): `gzh.noise_masks.make_views` on the uint8 batch, on `--device`.
It prints images/s for each, the ratio, and the batched pipeline's time as a share of one training step of the
default `GalaxyUNet` + `GalaxyLoss` (Adam) at the training batch size.

    python bench/views.py [--n 512] [--bs 256] [--size 128] [--step-bs 64] [--device cpu|cuda] [--workers 2] [--images DIR]
"""
import argparse, time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

from gzh.noise_masks import make_views
from gzh.testing import shared_data_dir

SHARED = shared_data_dir()
SPIRALS = SHARED / 'sdss-spirals' / 'images' if SHARED else None


def load(folder, n, size):
    "`n` real galaxies (JPEG) from `folder` resized to `size`, as PIL images; random images if there are none."
    files = sorted(Path(folder).glob('*.jpg'))[:n] if folder else []
    if files: return [Image.open(f).convert('RGB').resize((size, size)) for f in files]
    print(f'no JPEG in {folder}: using random images')
    return [Image.fromarray(np.random.default_rng(i).integers(0, 255, (size, size, 3), dtype=np.uint8)) for i in range(n)]


class PerSample(torch.utils.data.Dataset):
    "The original's pipeline: PIL/torchvision per image, numpy noise per image, OpenCV Otsu + morphology per image."
    tf = v2.Compose([v2.RandomHorizontalFlip(), v2.RandomAffine(180, translate=(0.06, 0.06), scale=(0.85, 1.15)),
                     v2.RandomApply([v2.ColorJitter(0.2, 0.2, 0.3)], p=0.8), v2.RandomGrayscale(0.2)])
    k3, k5 = np.ones((3, 3), np.uint8), np.ones((5, 5), np.uint8)

    def __init__(self, images): self.images = images
    def __len__(self): return len(self.images)

    def noise(self, c, rng):
        gain, sky, read = np.exp(rng.uniform(np.log(200), np.log(2000))), rng.uniform(50, 500), rng.uniform(3, 10)
        return np.clip((rng.poisson(c * gain + sky) + rng.normal(0, read, c.shape) - sky) / gain, 0, 1).astype(np.float32)

    def mask(self, c8):
        lum = cv2.GaussianBlur(cv2.cvtColor(c8, cv2.COLOR_RGB2GRAY), (9, 9), 1)
        m = cv2.threshold(lum, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)[1]
        m = cv2.morphologyEx(cv2.morphologyEx(m, cv2.MORPH_OPEN, self.k3), cv2.MORPH_CLOSE, self.k5)
        return cv2.dilate(m, self.k3).astype(np.float32)[None]

    def __getitem__(self, i):
        rng = np.random.default_rng()
        out = []
        for _ in range(2):
            c8 = np.asarray(self.tf(self.images[i]))
            c = c8.astype(np.float32) / 255
            out += [c.transpose(2, 0, 1), self.noise(c, rng).transpose(2, 0, 1), self.mask(c8)]
        return tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in out)


def sync(device):
    if device.type == 'cuda': torch.cuda.synchronize()


def per_sample_rate(images, bs, workers, reps):
    dl = torch.utils.data.DataLoader(PerSample(images), bs, num_workers=workers, persistent_workers=workers > 0)
    for _ in dl: pass  # start the workers
    t = time.perf_counter()
    for _ in range(reps):
        for _ in dl: pass
    return reps * len(images) / (time.perf_counter() - t)


def batched_time(x, reps, **kw):
    "Seconds per call of `make_views` on the uint8 batch `x` (best of `reps`)."
    make_views(x, **kw); sync(x.device)
    best = float('inf')
    for _ in range(reps):
        t = time.perf_counter(); make_views(x, **kw); sync(x.device)
        best = min(best, time.perf_counter() - t)
    return best


def step_time(x, reps):
    "Seconds per training step (views → U-Net → GalaxyLoss → backward → Adam) of the default model, best of `reps`."
    from gzh.unet import GalaxyUNet
    from gzh.losses import GalaxyLoss
    model, loss_func = GalaxyUNet().to(x.device), GalaxyLoss()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    v = make_views(x)
    amp = torch.autocast('cuda', torch.bfloat16, enabled=x.device.type == 'cuda')
    best = float('inf')
    for i in range(reps + 1):
        sync(x.device); t = time.perf_counter()
        with amp: loss = loss_func(model(v.noisy), v.clean, v.mask)
        loss.backward(); opt.step(); opt.zero_grad()
        sync(x.device)
        if i: best = min(best, time.perf_counter() - t)  # the first step warms up
    return best


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--n', type=int, default=512); p.add_argument('--bs', type=int, default=256)
    p.add_argument('--size', type=int, default=128); p.add_argument('--step-bs', type=int, default=64)
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--workers', type=int, default=2); p.add_argument('--reps', type=int, default=2)
    p.add_argument('--images', default=SPIRALS, help='folder of galaxy JPEGs (default: the shared SDSS spirals, see gzh.testing.shared_data_dir)')
    a = p.parse_args()
    device = torch.device(a.device)
    images = load(a.images, a.n, a.size)
    x = torch.stack([torch.from_numpy(np.array(im)).permute(2, 0, 1) for im in images])
    print(f'{len(images)} galaxies at {a.size} px, batch {a.bs}; torch threads {torch.get_num_threads()}; device {device}')

    base = per_sample_rate(images, a.bs, a.workers, a.reps)
    batches = x.to(device).split(a.bs)
    rate = lambda **kw: len(images) / sum(batched_time(b, a.reps, **kw) for b in batches)
    ours, exact = rate(), rate(exact_below=float('inf'))
    print(f'per-sample CPU pipeline ({a.workers} workers): {base:8.1f} images/s')
    print(f'batched make_views on {device}:            {ours:8.1f} images/s   ratio {ours / base:5.1f}x')
    print(f'  same, exact Poisson on every pixel:     {exact:8.1f} images/s   ratio {exact / base:5.1f}x')

    xs = x[:a.step_bs].to(device)
    t_views, t_step = batched_time(xs, a.reps), step_time(xs, 1 if device.type == 'cpu' else 5)
    print(f'batch {a.step_bs}: views {t_views * 1e3:.1f} ms, training step {t_step * 1e3:.1f} ms: '
          f'views are {100 * t_views / t_step:.1f}% of a step')


if __name__ == '__main__': main()
