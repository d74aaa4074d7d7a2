import json

import pytest
import torch

from gzh.unet import GalaxyUNet, model_cost


@pytest.fixture
def small():
    torch.manual_seed(0)
    return GalaxyUNet(width=8, depth=2, proj_dim=16)


@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
@pytest.mark.parametrize("size", [(16, 16), (32, 48)])
def test_shapes_and_range(norm, size):
    m = GalaxyUNet(width=4, depth=2, norm=norm, proj_dim=8).eval()
    x = torch.rand(3, 3, *size) * 4 - 2
    with torch.no_grad():
        recon, proj = m(x)
        emb, proj2 = m.encode(x)
    assert recon.shape == x.shape and proj.shape == (3, 8) and emb.shape == (3, m.emb_dim)
    assert 0 <= recon.min() and recon.max() <= 1
    torch.testing.assert_close(proj, proj2)


def test_default_config_and_rebuild():
    m = GalaxyUNet()
    assert m.config == dict(in_ch=3, width=16, depth=3, norm='batch', proj_dim=128)
    assert m.emb_dim == 128
    m2 = GalaxyUNet(**json.loads(json.dumps(m.config)))
    m2.load_state_dict(m.state_dict())  # same architecture: every key and shape matches


def test_every_parameter_gets_gradient(small):
    x = torch.rand(4, 3, 16, 16)
    recon, proj = small(x)
    (recon.mean() + proj.pow(2).mean()).backward()
    missing = [n for n, p in small.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing


def test_bad_input_messages(small):
    with pytest.raises(ValueError, match=r"divisible by 4; got \(1, 3, 18, 16\)"): small(torch.rand(1, 3, 18, 16))
    with pytest.raises(ValueError, match=r"expects \(B, 3, H, W\)"): small.encode(torch.rand(3, 16, 16))
    with pytest.raises(ValueError, match="norm must be one of"): GalaxyUNet(norm='layer')
    with pytest.raises(ValueError, match="depth and width"): GalaxyUNet(depth=0)


def test_channels_last_matches(small):
    small.eval()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        ref = small(x)
        out = small.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    for a, b in zip(out, ref): torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_model_cost_scales_with_pixels(small):
    c64, c128 = model_cost(small, 64), model_cost(small, 128)
    assert c64['params'] == sum(p.numel() for p in small.parameters())
    assert c128['gflops'] / c64['gflops'] == pytest.approx(4, rel=0.05)


@pytest.mark.slow
def test_compile_matches_eager(small):
    small.eval()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        ref, out = small(x), torch.compile(small)(x)
    for a, b in zip(out, ref): torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)


def test_untrained_output_starts_dark():
    m = GalaxyUNet(width=4, depth=2, proj_dim=8).eval()
    with torch.no_grad(): recon, _ = m(torch.rand(2, 3, 16, 16))
    assert recon.mean() < 0.15
