"The test galaxies: small synthetic images written to disk or made as tensors, shared by every test module."
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def write_galaxies(folder:Path, n:int=48, size:int=48, seed:int=0)->Path:
    "`n` PNG images of noisy elliptical blobs: a small folder SOURCE."
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:size, :size] / size - 0.5
    for i in range(n):
        a, b, t = rng.uniform(0.05, 0.2), rng.uniform(0.03, 0.12), rng.uniform(0, np.pi)
        u, v = xx*np.cos(t) + yy*np.sin(t), -xx*np.sin(t) + yy*np.cos(t)
        g = np.exp(-(u**2/a**2 + v**2/b**2) / 2)[..., None] * rng.uniform(0.5, 1, 3)
        img = np.clip(g + rng.normal(0.03, 0.01, g.shape), 0, 1)
        Image.fromarray((img * 255).astype(np.uint8)).save(folder/f'g{i:03d}.png')
    return folder


def galaxy_jpeg(path:Path, size=(424, 424)) -> np.ndarray:
    "Write a centred blob as a JPEG of `size` (width, height); return the RGB array written."
    y, x = np.mgrid[:size[1], :size[0]]
    blob = 255 * np.exp(-((x - size[0] / 2) ** 2 + (y - size[1] / 2) ** 2) / (2 * (min(size) / 8) ** 2))
    a = np.stack([blob, blob * .8, blob * .6], -1).astype(np.uint8)
    Image.fromarray(a).save(path, quality=95)
    return a


def blob_galaxies(n=4, size=48, seed=0):
    "Elliptical exponential galaxies with structure (a ring) on a flat 0.05 sky, as tensors; masks where the galaxy is."
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing='ij')
    imgs = []
    for _ in range(n):
        q = 0.5 + 0.5 * torch.rand(1, generator=g)
        r = (xx**2 + (yy / q)**2).sqrt()
        imgs.append((0.8 * (-r / 0.15).exp() + 0.3 * (-(r - 0.3).pow(2) / 0.003).exp()).expand(3, -1, -1))
    gal = torch.stack(imgs)
    mask = (gal[:, :1] > 0.02).float()
    return (gal * mask + 0.05).clamp(0, 1), mask
