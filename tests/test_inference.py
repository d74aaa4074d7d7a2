"Denoising with a trained model: the noise estimates, Noisier2Noise against an oracle, the inputs `denoise` takes, and the checks that score a denoiser without a truth."
import numpy as np
import pytest
import torch

from gzh.inference import denoise, estimate_noise
from gzh.losses import masked_psnr
from gzh.unet import GalaxyUNet


def test_estimate_noise(blob_batch):
    x, _ = blob_batch
    est = estimate_noise(x + 0.04 * torch.randn_like(x))
    assert est.shape == (4, 3, 1, 1)
    assert ((est - 0.04).abs() < 0.006).all()


class Oracle(torch.nn.Module):
    "Predicts E[N | Z] exactly for Z = X + E + M with E, M ~ N(0, s²): (X + Z) / 2 (the X is known)."
    def __init__(self, truth): super().__init__(); self.truth, self.w = truth, torch.nn.Parameter(torch.zeros(1))
    def forward(self, z): return (self.truth + z) / 2, None


def test_noisier2noise_recovers_truth_from_oracle(blob_batch):
    x, _ = blob_batch
    x = x.clamp(0.2, 0.8)  # keep away from the clip at 0 and 1
    observed = x + 0.05 * torch.randn_like(x)
    out = denoise(Oracle(x), observed, 'noisier2noise', noise=lambda t: t + 0.05 * torch.randn_like(t), n_samples=2, dihedral=False)  # the oracle knows one orientation
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)
    rec = denoise(Oracle(x), observed, 'reconstruct', dihedral=False)
    assert masked_psnr(rec, x).mean() < masked_psnr(out, x).mean()


def test_denoise_inputs_and_modes(blob_batch):
    x, _ = blob_batch
    model = GalaxyUNet(width=4, depth=2, proj_dim=8).train()
    u8 = (x * 255).round().to(torch.uint8)
    for imgs in (u8, u8.numpy(), x):
        out = denoise(model, imgs, 'noisier2noise', n_samples=2, bs=3)
        assert out.shape == x.shape and out.dtype == torch.float32 and 0 <= out.min() and out.max() <= 1
    assert model.training  # mode restored
    with pytest.raises(ValueError, match="mode must be"): denoise(model, u8, 'blur')
    with pytest.raises(ValueError, match=r"got shape \(3, 48, 48\)"): denoise(model, np.zeros((3, 48, 48), np.uint8))


@pytest.mark.parametrize('source', ['demo', 'cosmos'])
def test_residual_check_scores_the_truth_as_the_noise(source, request, tmp_path):
    "The ideal denoiser returns the truth; its residual is the noise, so the check must score it at 1 σ even where the sky holds faint wings and the noise is blurred over neighbours."
    from kornia.filters import gaussian_blur2d
    from gzh.data import load_cache
    from gzh.inference import residual_check, valid_truth
    name = 'demo' if source == 'demo' else f"cosmos_truth:{request.getfixturevalue('shared_data')/'cosmos-stamps'/'real_galaxy_catalog_26_extension_example.fits'}"
    observed, truth = valid_truth(load_cache(name, size=64, cache_dir=tmp_path, progress=False))
    noise = observed - truth
    blurred = gaussian_blur2d(noise, (5, 5), (0.8, 0.8))
    for obs in (observed, (truth + blurred * noise.std() / blurred.std()).clamp(0, 1)):
        assert abs(residual_check(obs, truth)['background std / σ'] - 1) < 0.05


@pytest.mark.parametrize('source', ['demo', 'cosmos'])
def test_signal_noise_matches_the_noise_drawn(source, request, tmp_path):
    "The noise that R2R and Noisier2Noise add must match the images' own: `signal_noise` of the observed images against the std of observed − truth, in bins of the truth's intensity up to the bright cores."
    from gzh.data import load_cache
    from gzh.inference import valid_truth
    from gzh.below_noise import signal_noise
    name = 'demo' if source == 'demo' else f"cosmos_truth:{request.getfixturevalue('shared_data')/'cosmos-stamps'/'real_galaxy_catalog_26_extension_example.fits'}"
    observed, truth = valid_truth(load_cache(name, size=64, cache_dir=tmp_path, progress=False))
    noise, estimate = observed - truth, signal_noise(observed)
    edges = (0., 0.02, 0.05, 0.1, 0.2, 0.5)
    for lo, hi in zip(edges[:-1], edges[1:]):
        at = (truth >= lo) & (truth < hi)
        assert abs(estimate[at].square().mean().sqrt() / noise[at].std() - 1) < 0.15, (lo, hi)
