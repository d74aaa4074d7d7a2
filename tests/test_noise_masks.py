"Views, noise and masks against the field's references (GalSim, scikit-image) and in the places they run (workers, ranks, fastai)."
import numpy as np
import pytest
import torch
from PIL import Image
from skimage import morphology as skm
from skimage.filters import gaussian, threshold_otsu

from gzh.noise_masks import Views, ViewsCallback, add_noise, as_images, foreground_mask, make_views, pair_index


def real_batch(shared_data, n=32, size=128):
    "The first `n` SDSS galaxies of `../shared/data`, resized, as a uint8 batch (n,3,size,size)."
    files = sorted((shared_data / 'sdss-spirals' / 'images').glob('*.jpg'))[:n]
    return torch.stack([torch.from_numpy(np.array(Image.open(f).convert('RGB').resize((size, size)))).permute(2, 0, 1) for f in files])


@pytest.mark.parametrize('gain,sky,read', [(300., 100., 5.),  # bright, sky-limited: N(λ, λ) regime
                                           (20., 2., 1.5)])   # a few electrons: exact Poisson, clamping at 0 matters
def test_noise_matches_galsim(gain, sky, read):
    galsim = pytest.importorskip('galsim')
    levels = np.linspace(0, 1, 11, dtype=np.float32)
    x = np.tile(levels, (4000, 1))  # each column: 4000 pixels at one level
    ours = add_noise(torch.from_numpy(x)[None, None], gain, sky, read, generator=torch.Generator().manual_seed(0))[0, 0].numpy()
    im = galsim.ImageF(x * gain)
    rng = galsim.BaseDeviate(1)
    im.addNoise(galsim.PoissonNoise(rng, sky_level=sky))
    im.addNoise(galsim.GaussianNoise(rng, sigma=read))
    ref = np.clip(im.array / gain, 0, 1)
    sd = ref.std(0)
    np.testing.assert_array_less(np.abs(ours.mean(0) - ref.mean(0)), 5 * sd / np.sqrt(len(x)) * np.sqrt(2) + 1e-6)
    ok = sd > 0
    np.testing.assert_allclose(ours.var(0)[ok], ref.var(0)[ok], rtol=0.08)


def reference_mask(img, sigma=1., min_snr=3., open_size=3, close_size=5, dilate_size=3):
    "The mask pipeline per image with scikit-image, as the original built it (float image (3,H,W) in [0,1])."
    lum = gaussian(np.tensordot([0.299, 0.587, 0.114], img, 1), sigma, mode='nearest', truncate=4.)
    thr = threshold_otsu(lum)
    p10, p30 = np.percentile(lum, [10, 30])
    if min_snr: thr = max(thr, p30 + (0.5244 + min_snr) * (p30 - p10) / 0.7572)
    m = lum > thr
    for op, k in [(skm.opening, open_size), (skm.closing, close_size), (skm.dilation, dilate_size)]:
        m = op(m, skm.footprint_rectangle((k, k)), mode='ignore')
    return m


@pytest.mark.parametrize('min_snr', [3., 0.])
def test_masks_match_skimage_on_real_galaxies(shared_data, min_snr):
    x = as_images(real_batch(shared_data))
    ours = foreground_mask(x, min_snr=min_snr)[:, 0].bool().numpy()
    ref = np.stack([reference_mask(im, min_snr=min_snr) for im in x.double().numpy()])
    iou = (ours & ref).sum((1, 2)) / np.maximum((ours | ref).sum((1, 2)), 1)
    assert iou.mean() >= 0.95, f"mean IoU {iou.mean():.3f}, worst {iou.min():.3f}"


def test_views_of_real_galaxies(shared_data):
    v = make_views(real_batch(shared_data), torch.Generator().manual_seed(0))
    assert all(torch.isfinite(t).all() for t in v)
    centre = torch.stack([v.m1[:, 0, 64, 64], v.m2[:, 0, 64, 64]])
    assert centre.mean() > 0.8, "SDSS cutouts are centred on their galaxy: the centre should be in the mask"
    assert 0.01 < v.m1.mean() < 0.5


def test_views_are_stacked_and_pair_index_pairs_them():
    B = 5
    v = make_views(torch.randint(0, 256, (B, 3, 16, 16), dtype=torch.uint8), torch.Generator().manual_seed(0))
    assert isinstance(v, Views) and [len(t) for t in v] == [2 * B] * 3
    for stacked, h1, h2 in [(v.clean, v.c1, v.c2), (v.noisy, v.n1, v.n2), (v.mask, v.m1, v.m2)]:
        assert torch.equal(stacked[:B], h1) and torch.equal(stacked[B:], h2)
    p = pair_index(2 * B)
    assert p.tolist() == [i + B for i in range(B)] + list(range(B))  # row i pairs with i + B, and back
    assert torch.equal(p[p], torch.arange(2 * B))
    assert torch.equal(v.clean[p][:B], v.c2) and torch.equal(v.clean[p][B:], v.c1)
    with pytest.raises(ValueError, match='even number of rows'): pair_index(2 * B + 1)


class _NoisyCopies(torch.utils.data.Dataset):
    def __len__(self): return 4
    def __getitem__(self, i): return add_noise(torch.full((1, 3, 16, 16), 0.5))[0]


def test_noise_differs_across_workers():
    torch.manual_seed(0)
    b = list(torch.utils.data.DataLoader(_NoisyCopies(), batch_size=2, num_workers=2))
    assert not torch.equal(b[0], b[1]), "worker 0 and worker 1 drew the same noise"


def test_noise_differs_across_ranks(monkeypatch):
    x = torch.full((1, 3, 16, 16), 0.5)
    torch.manual_seed(0); a = add_noise(x)
    monkeypatch.setenv('RANK', '1')
    torch.manual_seed(0); b = add_noise(x)
    torch.manual_seed(0); c = add_noise(x)
    assert not torch.equal(a, b) and torch.equal(b, c)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r'expected a batch of images .* got shape \(3, 8, 8\)'): make_views(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match='sky, read_noise >= 0'): add_noise(torch.zeros(1, 3, 8, 8), sky=-1.)
    with pytest.raises(TypeError, match=r"unknown parameters \['noise'\]"): make_views(torch.zeros(1, 3, 8, 8), noise=0.1)


def test_callback_trains_the_unet():
    unet, losses = pytest.importorskip('gzh.unet'), pytest.importorskip('gzh.losses')
    from fastai.data.core import DataLoaders
    from fastai.data.load import DataLoader
    from fastai.learner import Learner
    x = (torch.rand(8, 3, 32, 32) * 60).to(torch.uint8)
    x[:, :, 10:22, 10:22] += 150  # a bright square galaxy on dark sky
    ds = torch.utils.data.TensorDataset(x)
    dls = DataLoaders(DataLoader(ds, bs=4, shuffle=True), DataLoader(ds, bs=4))
    learn = Learner(dls, unet.GalaxyUNet(width=8, depth=2), loss_func=losses.GalaxyLoss(), cbs=ViewsCallback())
    with learn.no_logging():
        learn.fit(1)
        first, second = learn.validate(), learn.validate()
    assert np.isfinite(first[0]) and first == second
