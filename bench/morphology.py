"""How well do gzh's embeddings separate the morphological classes of a labelled catalogue?

    python bench/morphology.py --data CATALOGUE [CATALOGUE ...] --label COLUMN [--classes C ...] [--model MODEL]
                               [--crop C] [--size S] [--epochs N] [--batch-size B] [--lr LR] [--width W] [--depth D] [--objective O]
                               [--contrastive-weight W] [--temperature T] [--support N] [--grayscale P] [--saturation S] [--brightness B] [--contrast C] [--zoom LO HI] [--features F] [--no-dihedral] [--reduce R] [--dims N]
                               [--ks K ...] [--min-cluster-size N] [--simclr-epochs N] [--supervised] [--seed N] --out DIR

CATALOGUE is any `gzh.data.load_cache` source with a class column COLUMN, e.g. the Galaxy Zoo 1 SDSS set:
`--data ../shared/data/gz1-sdss/catalog.csv --label morphology --classes elliptical spiral edge_on`. Several
catalogues train on their union (`gzh.data.concat_sources`); the figures are measured on the galaxies with a label.
With `--model` (a file written by `gzh.train.save_model`) it measures that model, on images cut as it was trained
(its `crop` and `size` unless `--crop`/`--size` are given); without, it first trains one (`--crop` 0.35 unless given) with
`gzh.train.fit_galaxies`' default recipe, with the objective that embeds morphology best, `reconstruct` (`--epochs`, `--batch-size`, `--lr`, `--width`, `--depth`, `--objective`, the loss and the view options override it; labels unused) on every galaxy of the
catalogue's training split and saves it as DIR/model.pth. Then it embeds every galaxy with the model (`--features`,
averaged over the 8 rotations and flips unless `--no-dihedral`), with an untrained GalaxyUNet of the same shape
(seeded, embedded alike), with raw-pixel PCA(64) (`gzh.probes.pixel_pca`) and with stock SimCLR (`gzh.unet.StockSimCLR`,
a ResNet-18 trained by NT-Xent alone on the same views and galaxies, `--simclr-epochs`, by default as many as the
model's; 0 leaves it out), and runs
`gzh.morphology.morphology_report` on the held-out split (`gzh.probes.probe_split`, the galaxies training held out),
restricted to `--classes` (default: every known class): kNN and logistic accuracy, balanced accuracy and macro-F1,
the few-shot curve (10/30/100 labels per class, 10 draws), HDBSCAN and best-K-means (k = 3..8, or `--ks`) clusters against the
label (after `--reduce` to `--dims` dimensions: by default UMAP to 2, the reduction that puts most galaxies in a
cluster), and the R² of any `*_fraction` column. It writes DIR/morphology.json and DIR/confusion_<features>.png,
and prints one table with the model's column beside pixel PCA, the untrained network and stock SimCLR.

With `--supervised` the model is a ceiling, not a recipe: the same GalaxyUNet's encoder and a linear head trained on the
training split's classes themselves (class-weighted cross-entropy, one view of each galaxy per step, the same
`--epochs`, `--batch-size`, `--lr`, `--width`, `--depth` and views), measured with the same probes: what the labels,
and not the self-supervised objective, would buy on these images.
"""
import argparse, inspect, json, time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt
from fastai.torch_core import set_seed
from fastai.callback.core import Callback
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat
from fastai.metrics import BalancedAccuracy
from fastai.optimizer import Adam
from sklearn.utils.class_weight import compute_class_weight
from torch import nn

from gzh.cluster import load_embeddings
from gzh.data import load_cache, galaxy_dls
from gzh.embed import FEATURES, embed
from gzh.morphology import class_rows, morphology_report, plot_confusion, report_table
from gzh.probes import pixel_pca
from gzh.losses import GalaxyLoss, OBJECTIVES
from gzh.noise_masks import as_images, view_augment
from gzh.unet import GalaxyUNet, StockSimCLR
from gzh.train import fit_galaxies, load_model, galaxy_learner, fit_cycle, precision_callback, save_model


TRAIN_CROP = 0.35 # the crop that trained best on survey cutouts whose galaxy fills their middle (0.35 beat 'auto' and 1)
TRAIN_OBJECTIVE = 'reconstruct' # the objective that embeds morphology best (kNN balanced accuracy 0.78 against 0.72 for fit_galaxies' default, 'blindspot')


def fit_default(name:str):
    "The default of one of `fit_galaxies`' arguments."
    return inspect.signature(fit_galaxies).parameters[name].default


def crop_value(s:str):
    "`--crop`: a fraction of the side, or a named mode of the data layer (e.g. 'auto')."
    try: return float(s)
    except ValueError: return s


def given(**options)->dict:
    "The options that were given on the command line (not None)."
    return {k: v for k, v in options.items() if v is not None}

class LabelledViews(Callback):
    "Each training batch of uint8 images becomes one random view of each (`augment`); validation sees the images as they are."
    def __init__(self, augment:nn.Module|None=None): self.augment = augment or view_augment()
    def before_batch(self):
        x = as_images(self.xb[0])
        self.learn.xb = (self.augment(x) if self.training else x,)


class EmbeddingClassifier(nn.Module):
    "A linear class head on a GalaxyUNet's embedding (the pooled bottleneck that the probes read)."
    def __init__(self, unet:GalaxyUNet, n_classes:int):
        super().__init__(); self.unet, self.head = unet, nn.Linear(unet.emb_dim, n_classes)
    def forward(self, x): return self.head(self.unet.encode(x)[0])


def fit_on_labels(cache, label:str, classes, epochs:int, bs:int, lr:float, seed:int, model_kw:dict, augment=None):
    "The supervised ceiling: a GalaxyUNet's encoder and a linear head (`EmbeddingClassifier`) trained on the training split's `classes` (class-weighted cross-entropy); the trained `Learner`."
    set_seed(seed, reproducible=True)
    train, valid, y, classes = class_rows(cache.catalog, label, classes)
    codes = pd.Index(classes).get_indexer(y).astype(np.int64)  # -1 for galaxies of no class measured: in neither split's rows
    ds = lambda rows: torch.utils.data.TensorDataset(torch.from_numpy(np.asarray(cache.images[rows])), torch.from_numpy(codes[rows]))
    dls = DataLoaders.from_dsets(ds(train), ds(valid), bs=bs)  # shuffled, whole batches for training; every held-out galaxy, in order
    weight = torch.tensor(compute_class_weight('balanced', classes=np.arange(len(classes)), y=codes[train]), dtype=torch.float32)
    model = EmbeddingClassifier(GalaxyUNet(**model_kw), len(classes))
    learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(weight=weight.to(dls.device)), opt_func=Adam, lr=lr, wd=1e-4,
                    metrics=BalancedAccuracy(), cbs=[c for c in (LabelledViews(augment), precision_callback(dls.device)) if c])
    learn.fit_one_cycle(epochs, lr)
    return learn


def get_model(a, out:Path):
    "The model to measure, how it was obtained, and the image size and crop to embed with."
    if a.model:
        model = load_model(a.model)
        meta = getattr(model, 'meta', {}) or {}
        size, crop = a.size or meta.get('size', 64), a.crop if a.crop is not None else meta.get('crop', 1.)
        return model, f'loaded {a.model}', load_cache(a.data, size=size, crop=crop, progress=False)
    size = a.size or fit_default('size')
    crop = a.crop if a.crop is not None else TRAIN_CROP
    cache = load_cache(a.data, size=size, crop=crop, progress=False)
    kw = given(epochs=a.epochs, bs=a.batch_size, lr=a.lr, model_kw=given(width=a.width, depth=a.depth) or None, objective=a.objective,
               channels_last=a.channels_last, compile=a.compile)
    loss = given(contrastive_weight=a.contrastive_weight, temperature=a.temperature, support=a.support)
    if loss:  # on the objective's own loss, whose term weights it sets
        base = OBJECTIVES[a.objective]()[0]
        kw['loss_func'] = GalaxyLoss(fg_weight=base.fg_weight, bg_weight=base.bg_weight, **loss)
    views = given(grayscale=a.grayscale, saturation=a.saturation, brightness=a.brightness, contrast=a.contrast, zoom=a.zoom and tuple(a.zoom))
    augment = view_augment(**views) if views else None
    if views: kw['views'] = dict(augment=augment)
    t = time.perf_counter()
    if a.supervised:
        model = fit_on_labels(cache, a.label, a.classes, kw.get('epochs', fit_default('epochs')), kw.get('bs', fit_default('bs')),
                              kw.get('lr', fit_default('lr')), a.seed, kw.get('model_kw') or {}, augment).model.unet
        save_model(model, out/'model.pth', size=size, crop=crop, supervised=a.label)
        return model.cpu().eval(), f'trained on the labels {a.label!r} (the supervised ceiling) in {time.perf_counter() - t:.0f} s -> {out/"model.pth"}', cache
    model = fit_galaxies(cache=cache, out=out, progress=False, seed=a.seed, **kw).model
    said = {**{k: v for k, v in kw.items() if k not in ('loss_func', 'views')}, **loss, **views} or 'the default recipe'
    return model.cpu().eval(), f'trained ({said}) in {time.perf_counter() - t:.0f} s -> {out/"model.pth"}', cache


def stock_simclr(cache, epochs:int, bs:int, seed:int, out:Path):
    "SimCLR as a user would train it: `StockSimCLR`, NT-Xent alone, on gzh's views of the cache's training galaxies, with gzh's one-cycle schedule; the trained `Learner`."
    set_seed(seed, reproducible=True)
    learn = galaxy_learner(galaxy_dls(cache, bs=bs), StockSimCLR(), loss_func=GalaxyLoss(fg_weight=0., bg_weight=0., contrastive_weight=1.),
                           objective='reconstruct', path=out/'stock_simclr', checkpoint=None, log=None, progress=False)
    t = time.perf_counter()
    fit_cycle(learn, epochs, learn.lr)
    print(f'stock SimCLR: {epochs} epochs, batch {bs}, in {time.perf_counter() - t:.0f} s')
    return learn


def features(model, cache, seed:int=0, simclr:StockSimCLR|None=None, **embed_kw)->tuple:
    "Frozen features per name (the model, an untrained GalaxyUNet of its shape, stock SimCLR when given, pixel PCA) and the catalogue columns."
    torch.manual_seed(seed)
    feats = {}
    for name, m in (('gzh', model), ('untrained', GalaxyUNet(**model.config)), ('stock_simclr', simclr)):
        if m is None: continue
        X, meta = load_embeddings(embed(m, cache, **embed_kw)); feats[name] = X  # on the GPU when there is one
    feats['pixel_pca'] = pixel_pca(np.asarray(cache.images), 64, seed=seed)
    return feats, meta


def save_confusions(rep:dict, out:Path)->list:
    "One small figure per feature set: the kNN and logistic confusion matrices."
    files = []
    for name, r in rep['features'].items():
        n = len(rep['classes'])
        fig, axs = plt.subplots(1, 2, figsize=(2 * (1 + 0.8 * n), 0.8 + 0.8 * n))
        for ax, p in zip(axs, ('knn', 'logistic')): plot_confusion(r[p], f"{name} {p}: bal. acc. {r[p]['balanced_accuracy']:.2f}", ax)
        fig.tight_layout(); fig.savefig(out/f'confusion_{name}.png', dpi=72); plt.close(fig)
        files.append(f'confusion_{name}.png')
    return files


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--data', required=True, nargs='+', help='a labelled catalogue (any gzh.data.load_cache source), or several to train on their union')
    p.add_argument('--label', required=True, help='the class column')
    p.add_argument('--classes', nargs='+', help='the classes to measure (default: every known class)')
    p.add_argument('--model', help='model file from gzh.train.save_model (default: train one into DIR/model.pth)')
    p.add_argument('--crop', type=crop_value, help="central fraction of each image's side, or 'auto' (default: the model's, else 0.35)")
    p.add_argument('--size', type=int, help="image side in pixels (default: the model's, else fit_galaxies')")
    p.add_argument('--epochs', type=int, help="epochs when training (default: fit_galaxies')")
    p.add_argument('--batch-size', type=int, help="batch size when training (default: fit_galaxies')")
    p.add_argument('--lr', type=float, help="maximum learning rate when training (default: fit_galaxies')")
    p.add_argument('--width', type=int, help="U-Net width when training (default: GalaxyUNet's)")
    p.add_argument('--depth', type=int, help="U-Net down-samplings when training (default: GalaxyUNet's)")
    p.add_argument('--objective', choices=tuple(OBJECTIVES), default=TRAIN_OBJECTIVE, help=f"what the U-Net learns when training (default: {TRAIN_OBJECTIVE})")
    p.add_argument('--contrastive-weight', type=float, help="the contrastive term's weight when training (default: GalaxyLoss')")
    p.add_argument('--temperature', type=float, help="the contrastive term's temperature when training (default: GalaxyLoss')")
    p.add_argument('--support', type=int, help="NNCLR's support set when training: positives are nearest neighbours among this many earlier projections (default: GalaxyLoss', 0: NT-Xent)")
    p.add_argument('--grayscale', type=float, help="probability of a grayscale view when training (default: gzh.noise_masks.view_augment's)")
    p.add_argument('--saturation', type=float, help="saturation jitter of the views when training (default: view_augment's)")
    p.add_argument('--brightness', type=float, help="brightness jitter of the views when training (default: view_augment's)")
    p.add_argument('--contrast', type=float, help="contrast jitter of the views when training (default: view_augment's)")
    p.add_argument('--zoom', type=float, nargs=2, metavar=('LO', 'HI'), help="range of the views' scale factor when training (default: view_augment's)")
    p.add_argument('--channels-last', action='store_true', default=None, help='channels-last memory format when training (faster convolutions, on a CPU too)')
    p.add_argument('--compile', action='store_true', default=None, help='torch.compile the model when training (faster steps after a minute of compiling)')
    p.add_argument('--features', default='embedding', choices=FEATURES, help='what gzh.embed.embed returns (default: embedding)')
    p.add_argument('--no-dihedral', dest='dihedral', action='store_false', help='embed each galaxy once, not averaged over its 8 rotations and flips')
    p.add_argument('--reduce', default='umap', choices=('pca', 'umap'), help='reduction before clustering (default: umap)')
    p.add_argument('--dims', type=int, default=2, help='dimensions the reduction keeps (default: 2)')
    p.add_argument('--ks', type=int, nargs='+', help="K-means' k tried; the best silhouette wins (default: 3 to 8; the number of classes asks K-means for them)")
    p.add_argument('--min-cluster-size', type=int, help="HDBSCAN's minimum cluster size (default: gzh.cluster.run_hdbscan's)")
    p.add_argument('--simclr-epochs', type=int, help="epochs of the stock SimCLR baseline (default: the model's, else fit_galaxies'; 0: none)")
    p.add_argument('--supervised', action='store_true', help="train on the label's classes instead (a ceiling for the self-supervised recipe, not a recipe)")
    p.add_argument('--seed', type=int, default=0, help='seeds training (weights and views), the untrained network, pixel PCA, few-shot draws and clusters')
    p.add_argument('--out', required=True, help='folder for morphology.json, the confusion figures and, when training, model.pth')
    a = p.parse_args(argv)
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    model, how, cache = get_model(a, out)
    print(f'model: {how}; config {model.config}; images: {cache.size} px, crop {cache.crop}; {len(cache.images)} galaxies')
    run = getattr(model, 'meta', {}) or {}
    simclr_epochs = a.simclr_epochs if a.simclr_epochs is not None else run.get('epochs', a.epochs or fit_default('epochs'))
    simclr = stock_simclr(cache, simclr_epochs, run.get('bs', a.batch_size or fit_default('bs')), a.seed, out).model.cpu().eval() if simclr_epochs else None
    t = time.perf_counter()
    feats, meta = features(model, cache, a.seed, simclr, features=a.features, dihedral=a.dihedral)
    print(f'embedded ({a.features}{", dihedral" if a.dihedral else ""}) in {time.perf_counter() - t:.0f} s')
    t = time.perf_counter()
    rep = morphology_report(feats, meta, a.label, a.classes, seed=a.seed,
                            cluster_kw=dict(reduce_method=a.reduce, n_components=a.dims, min_cluster_size=a.min_cluster_size, **given(ks=a.ks)))
    print(f"\n{a.label} on the valid split: {rep['n_valid']} galaxies {rep['valid_counts']} (train {rep['n_train']}); "
          f"report in {time.perf_counter() - t:.0f} s")
    table = report_table(rep)[[c for c in ('gzh', 'stock_simclr', 'untrained', 'pixel_pca') if c in feats]]
    with pd.option_context('display.width', 200, 'display.max_rows', 200): print(table.map(lambda v: f'{v:.3f}' if isinstance(v, float) else v).to_string())
    rep.update(model=how, data=a.data, size=cache.size, crop=cache.crop, features_used=a.features, dihedral=a.dihedral,
               reduce=a.reduce, dims=a.dims, figures=save_confusions(rep, out))
    (out/'morphology.json').write_text(json.dumps(rep, indent=1, default=lambda o: o.item() if hasattr(o, 'item') else str(o)))
    print(f"\nresults: {out/'morphology.json'}")
    return rep


if __name__ == '__main__': main()
