"""Do gzh's embeddings capture morphology on real galaxies?

    python bench/morphology.py [--model PATH] [--crop C] [--epochs N] [--width W] [--bs B] [--probe-every K] [--out DIR]

With `--model` (a file written by `gzh.train.save_model`, e.g. RUN/model.pth) it measures that model, on images
cropped as it was trained; without, it first trains one with `gzh.train.fit_galaxies` on the 1,400 train-split images
of sdss-spirals at 64 px, keeping the central `--crop` of each image (default 0.5; labels unused), and saves it in DIR;
with `--probe-every K` it prints the `spiral` probes every K epochs of that training (how far longer training goes:
`--epochs 100 --probe-every 10` on a GPU). Then, from frozen embeddings:
- sdss-spirals: kNN (k=10, cosine) and logistic-probe accuracy of `spiral` on the 600 valid-split galaxies, and
  ARI/NMI of HDBSCAN and K-means clusters with `spiral`;
- decals-rings (470, the seeded 80/20 split training would use): `ring` accuracy and R² (kNN, ridge) of its three
  vote fractions.
Every number is printed beside the same probe on raw-pixel PCA and on an untrained GalaxyUNet, measured in the same run
on the same (cropped) images. The probes hold out the galaxies training holds out (`gzh.probes.probe_split`). The
image sets are read from `gzh.testing.shared_data_dir()` (`$GZH_SHARED_DATA`, else ../shared/data); the results go to
DIR/morphology.json, DIR being `--out` (default runs/morphology).
"""
import argparse, json, sys, time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from gzh.cluster import agreement, kmeans_sweep, load_embeddings, reduce, run_hdbscan
from gzh.data import load_cache
from gzh.embed import embed
from gzh.probes import pixel_pca, probe, probe_split
from gzh.testing import shared_data_dir
from gzh.unet import GalaxyUNet
from fastai.callback.core import Callback

VOTES = ['smooth-or-featured_featured-or-disk_fraction', 'disk-edge-on_no_fraction', 'has-spiral-arms_no_fraction']


def features(models:dict, cache)->tuple:
    "Frozen features per name (each model's embeddings and raw-pixel PCA) and the catalogue columns."
    out = {}
    for name, m in models.items(): X, meta = load_embeddings(embed(m, cache)); out[name] = X
    out['pixel PCA'] = pixel_pca(np.asarray(cache.images), 64)
    return out, meta


class ProbeEvery(Callback):
    "Print the kNN and logistic accuracy of `spiral` from the model's embeddings every `every` epochs of training."
    order = 100
    def __init__(self, cache, every:int): self.cache, self.every = cache, every
    def after_epoch(self):
        if (self.epoch + 1) % self.every: return
        X, meta = load_embeddings(embed(self.model, self.cache))
        r = probe(X, meta['spiral'], *probe_split(meta))
        print(f"epoch {self.epoch + 1}: spiral kNN {r['knn_acc']:.3f}, logistic {r['linear_acc']:.3f}", flush=True)


def clusters_vs(X:np.ndarray, y)->dict:
    "ARI/NMI of HDBSCAN and K-means (k=2 and the silhouette-best k) clusters with label `y`."
    Z = reduce(X)
    sweep, parts = kmeans_sweep(Z, range(2, 11))
    best = int(sweep['silhouette'].idxmax())
    h = run_hdbscan(Z)
    res = {'hdbscan': agreement(h['labels'], y), 'kmeans k=2': agreement(parts[2], y), f'kmeans k={best} (best)': agreement(parts[best], y)}
    return {k: {m: round(v[m], 3) for m in ('ari', 'nmi', 'purity', 'noise_frac')} for k, v in res.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--model', help='model file from gzh.train.save_model (default: train one)')
    p.add_argument('--crop', type=float, help="central fraction of each image's side (default: the model's, else 0.5)")
    p.add_argument('--epochs', type=int, default=12, help='epochs when training')
    p.add_argument('--width', type=int, default=32, help='GalaxyUNet width when training')
    p.add_argument('--bs', type=int, default=32, help='batch size when training')
    p.add_argument('--probe-every', type=int, help='when training, print the spiral probes every K epochs')
    p.add_argument('--out', default='runs/morphology', help='folder for morphology.json and, when training, the model')
    a = p.parse_args(argv)
    shared = shared_data_dir()
    if shared is None: sys.exit('bench/morphology.py needs the real image sets: set $GZH_SHARED_DATA or provide ../shared/data')
    model = None
    if a.model:
        from gzh.train import load_model
        model, how = load_model(a.model), f'loaded {a.model}'
    crop = a.crop or (model.meta.get('crop', 1.) if model else 0.5)
    sdss = load_cache(str(shared / 'sdss-spirals' / 'catalog.csv'), size=64, crop=crop, progress=False)
    t = time.perf_counter()
    if model is None:
        from gzh.train import fit_galaxies
        model = fit_galaxies(cache=sdss, epochs=a.epochs, bs=a.bs, model_kw=dict(width=a.width), out=a.out, progress=False,
                             cbs=[ProbeEvery(sdss, a.probe_every)] if a.probe_every else None).model
        how = f'trained {a.epochs} epochs (width {a.width}, bs {a.bs}) in {time.perf_counter() - t:.0f} s -> {a.out}/model.pth'
    torch.manual_seed(0)
    untrained = GalaxyUNet(**model.config)
    models = {'gzh': model.cpu(), 'untrained': untrained}
    print(f'model: {how}; config {model.config}; images: 64 px, central {crop:g} of each side')

    feats, meta = features(models, sdss)
    tr, va = probe_split(meta)
    spiral = pd.DataFrame({k: probe(X, meta['spiral'], tr, va) for k, X in feats.items()}).T
    print(f'\nsdss-spirals, spiral on the valid split ({len(va)} galaxies; train {len(tr)}):')
    print(spiral[['knn_acc', 'linear_acc', 'chance']].round(3).to_string())
    print(f"kNN accuracy ratio gzh / pixel PCA: {spiral.loc['gzh', 'knn_acc'] / spiral.loc['pixel PCA', 'knn_acc']:.2f} (target gzh >= 0.85)")
    clus = {k: clusters_vs(X, meta['spiral']) for k, X in feats.items()}
    print('\nclusters vs spiral (all 2000 galaxies):')
    print(pd.DataFrame({(f, c): v for f, d in clus.items() for c, v in d.items()}).T.to_string())

    rings = load_cache(str(shared / 'decals-rings' / 'catalog.csv'), size=64, crop=crop, progress=False)
    rfeats, rmeta = features(models, rings)
    rtr, rva = probe_split(rmeta)
    rows = {(k, col): probe(X, rmeta[col], rtr, rva) for k, X in rfeats.items() for col in ['ring', *VOTES]}
    ring = pd.DataFrame(rows).T
    print(f'\ndecals-rings ({len(rva)} held-out of {len(rmeta)}):')
    print(ring.drop(columns='n_valid').round(3).to_string())
    res = dict(model=how, crop=crop, spiral=spiral.to_dict(), clusters=clus, rings={f'{k}|{c}': v for (k, c), v in rows.items()})
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    (out / 'morphology.json').write_text(json.dumps(res, indent=1, default=float))
    print(f"\nresults: {out / 'morphology.json'}")
    return res


if __name__ == '__main__': main()
