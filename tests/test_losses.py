import pytest
import torch
import torch.nn.functional as F
from pytorch_msssim import ssim

from gzh.losses import (RECON_METRICS, BackgroundLoss, ForegroundSSIMLoss, GalaxyLoss, NTXent, masked_psnr,
                        masked_ssim, recon_metrics, ssim_map)
from gzh.noise_masks import make_views, pair_index, view_augment
from gzh.unet import GalaxyUNet


def test_ssim_map_matches_pytorch_msssim_inside_border(blob_batch):
    x, _ = blob_batch
    y = (x + 0.05 * torch.randn_like(x)).clamp(0, 1)
    m = ssim_map(y, x)
    assert m.shape == x.shape
    torch.testing.assert_close(m[..., 5:-5, 5:-5].mean(), ssim(y, x, data_range=1.), atol=1e-5, rtol=0)


def test_masked_ssim_avoids_mask_multiplication_inflation(blob_batch):
    x, mask = blob_batch
    # perfect on the background, galaxy replaced by its blurred version (structure lost)
    blurred = F.avg_pool2d(F.pad(x, (4,) * 4, mode='replicate'), 9, stride=1)
    recon = x * (1 - mask) + blurred * mask
    honest = masked_ssim(recon, x, mask)
    inflated = ssim(recon * mask, x * mask, data_range=1., size_average=False)
    assert (masked_ssim(recon, x, 1 - mask) > 0.95).all()  # the background really is right
    assert (inflated > 0.8).all()
    assert (inflated - honest > 0.15).all(), (honest, inflated)


def test_masked_psnr(blob_batch):
    x, mask = blob_batch
    y = x + 0.1 * mask  # error only on the galaxy
    assert torch.isinf(masked_psnr(y, x, 1 - mask)).all()
    torch.testing.assert_close(masked_psnr(y, x, mask), torch.full((4,), 20.))
    whole = 10 * torch.log10(1 / ((y - x)**2).flatten(1).mean(1))
    torch.testing.assert_close(masked_psnr(y, x), whole)
    assert masked_psnr(y, x, torch.zeros_like(mask)).isnan().all()


@pytest.mark.parametrize("bad", [lambda x, m: (x, x[:, :2], m), lambda x, m: (x, x, m[:, 0]), lambda x, m: (x, x, m[:2])])
def test_metric_shape_errors(blob_batch, bad):
    with pytest.raises(ValueError, match="same shape|mask must be"): masked_ssim(*bad(*blob_batch))


def test_foreground_loss(blob_batch):
    x, mask = blob_batch
    loss = ForegroundSSIMLoss()
    assert loss(x, x, mask).abs() < 1e-5
    noisy = x + 0.1 * torch.randn_like(x) * mask  # damage only inside the mask
    assert loss(noisy, x, mask) > 0.1
    assert loss(noisy, x, torch.zeros_like(mask)) == 1  # empty mask: finite, no gradient signal
    pred = x.clone().requires_grad_()
    loss(pred + 0.05 * torch.randn_like(x), x, mask).backward()
    assert pred.grad.abs().sum() > 0


def test_background_loss(blob_batch):
    x, mask = blob_batch
    assert BackgroundLoss()(x, x, mask).abs() < 1e-6
    b = BackgroundLoss(dark_weight=0.5)
    torch.testing.assert_close(b(x + 0.2, x, mask), torch.tensor(0.1))  # TV 0, offset 0.2 from the sky
    torch.testing.assert_close(b.terms['tv'], torch.tensor(0.))
    noisy_sky = x + 0.1 * torch.randn_like(x) * (1 - mask)
    assert b(noisy_sky, x, mask) > 0.05
    assert b(x + 0.1 * torch.randn_like(x) * mask, x, mask) < 0.05  # galaxy pixels do not count


def ntxent_by_definition(z, t):
    "Chen et al. 2020 eq. 1, one ordered pair at a time, in float64."
    z = F.normalize(z.double(), dim=1)
    n, total = len(z), 0.
    for i in range(n):
        sims = torch.stack([z[i] @ z[k] / t for k in range(n)])
        others = torch.cat([sims[:i], sims[i+1:]])
        total = total - (sims[(i + n // 2) % n] - torch.log(others.exp().sum()))
    return total / n


@pytest.mark.parametrize("t", [0.07, 0.5, 1.0])
def test_ntxent_matches_definition(t):
    z = torch.randn(16, 10, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(NTXent(t)(z).double(), ntxent_by_definition(z, t), atol=1e-5, rtol=0)


def test_ntxent_prefers_aligned_pairs_and_checks_shape():
    z = torch.randn(8, 4)
    assert NTXent()(torch.cat([z[:4], z[:4]])) < NTXent()(z)
    with pytest.raises(ValueError, match=r"\(2B, D\)"): NTXent()(torch.randn(7, 4))


def test_ntxent_and_views_agree_on_pairs(blob_batch):
    "In stacked `Views` the other view of row i is row `pair_index(2B)[i]`, and that is NT-Xent's positive for row i."
    x, _ = blob_batch
    still = view_augment(degrees=0, translate=0, zoom=(1, 1), flip=0, jitter=0, grayscale=0)
    v = make_views(x, torch.Generator().manual_seed(0), still)  # both views of a galaxy identical, galaxies distinct
    flat = v.clean.flatten(1)
    same = (flat[:, None] - flat[None]).abs().amax(-1) < 1e-6
    same.fill_diagonal_(False)
    n = len(v.clean)
    assert (same.sum(1) == 1).all()
    assert same.float().argmax(1).tolist() == pair_index(n).tolist()
    z = torch.randn(n, 6, generator=torch.Generator().manual_seed(1))
    sim = (F.normalize(z, dim=1) @ F.normalize(z, dim=1).T / 0.5).fill_diagonal_(float('-inf'))
    partner = same.float().argmax(1)  # found from the images, not from pair_index
    torch.testing.assert_close(NTXent(0.5)(z), F.cross_entropy(sim, partner))


def test_galaxy_loss_terms_and_gradients(blob_batch):
    x, mask = blob_batch
    torch.manual_seed(0)
    model = GalaxyUNet(width=4, depth=2, proj_dim=8)
    v = make_views(x, torch.Generator().manual_seed(0))
    loss_func = GalaxyLoss()
    loss = loss_func(model(v.noisy), v.clean, v.mask)
    t = loss_func.terms
    assert set(t) >= {'fg', 'bg', 'tv', 'dark', 'contrastive', 'total'}
    assert tuple(t) == GalaxyLoss.TERMS + ('total',)
    assert all(not v.requires_grad for v in t.values())
    torch.testing.assert_close(loss.detach(), 0.8 * t['fg'] + 0.2 * t['bg'] + 0.75 * t['contrastive'])
    torch.testing.assert_close(t['bg'], t['tv'] + 0.25 * t['dark'])
    loss.backward()
    assert model.head[0].weight.grad.abs().sum() > 0 and model.out.weight.grad.abs().sum() > 0


def test_recon_metrics_baseline(blob_batch):
    x, mask = blob_batch
    noisy = x + 0.08 * torch.randn_like(x)
    met = recon_metrics(x, noisy, x, mask)  # a perfect reconstruction beats its noisy input everywhere
    assert tuple(met) == RECON_METRICS
    for r in ('fg', 'bg'):
        assert (met[f'recon_ssim_{r}'] > met[f'noisy_ssim_{r}']).all()
        assert (met[f'recon_psnr_{r}'] > met[f'noisy_psnr_{r}']).all()


def test_ssim_map_is_fp32_under_autocast(blob_batch):
    x, _ = blob_batch
    y = (x + 0.05 * torch.randn_like(x)).clamp(0, 1)
    ref = ssim_map(y, x)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        m = ssim_map(y.bfloat16(), x.bfloat16())
    assert m.dtype == torch.float32
    torch.testing.assert_close(m, ssim_map(y.bfloat16().float(), x.bfloat16().float()))
    assert (m - ref).abs().mean() < 0.02
