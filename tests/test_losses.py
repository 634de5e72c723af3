"""Loss terms 1-7 (method.md §5.2) on toy tensors with hand-computed values, and their schedules."""

from __future__ import annotations

import pytest
import torch

from humanref_cli.train import losses


def test_rgb_loss():
    rgb = torch.full((2, 3, 3), 0.5)
    ref = torch.zeros(2, 3, 3)
    ref[0, 0] = torch.tensor([0.5, 0.5, 1.5])  # pixel (0, 0): errors 0, 0, 1
    # the other 5 pixels: 15 elements off by 0.5; 18 elements in all.
    assert losses.rgb_loss(rgb, ref).item() == pytest.approx((15 * 0.25 + 1.0) / 18)


def test_normal_loss_only_counts_masked_pixels():
    normal = torch.zeros(2, 2, 3)
    target = torch.zeros(2, 2, 3)
    normal[0, 0] = torch.tensor([1.0, 0.0, 0.0])
    target[0, 0] = torch.tensor([0.0, 1.0, 0.0])
    normal[1, 1] = torch.tensor([5.0, 5.0, 5.0])  # outside the mask: ignored
    mask = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    # masked pixels: (0,0) squared error 2, (0,1) 0 -> 2 / (2 pixels * 3 channels)
    assert losses.normal_loss(normal, target, mask).item() == pytest.approx(2 / 6)
    assert losses.normal_loss(normal, target, torch.zeros(2, 2)).item() == 0.0


def test_normal_map_for_loss_puts_background_at_minus_one():
    normal = torch.tensor([[[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]])  # (1, 2, 3)
    opacity = torch.tensor([[[1.0], [0.0]]])
    out = losses.normal_map_for_loss(normal, opacity)
    assert torch.equal(out, torch.tensor([[[0.0, 0.0, 1.0], [-1.0, -1.0, -1.0]]]))
    half = losses.normal_map_for_loss(normal[:, :1], torch.tensor([[0.5]]))
    assert torch.allclose(half, torch.tensor([[[-0.5, -0.5, 0.0]]]))  # (N+1)/2*O*2-1


def test_silhouette_loss():
    mask = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    assert losses.silhouette_loss(mask, mask).item() == pytest.approx(0.0)
    assert losses.silhouette_loss(1 - mask, mask).item() == pytest.approx(1.0)
    opacity = torch.tensor([[1.0, 0.5], [0.5, 0.0]])[..., None]  # (H, W, 1) is accepted
    # inter = 1 + 0.5 = 1.5, union = sum(O + M - OM) = (1+1-1) + (0.5+1-0.5) + 0.5 + 0 = 2.5
    assert losses.silhouette_loss(opacity, mask).item() == pytest.approx(1 - 1.5 / 2.5)


def test_sdf_prior_and_smoothness():
    sdf = torch.tensor([0.1, -0.3, 0.0])
    prior = torch.zeros(3)
    assert losses.sdf_prior_loss(sdf, prior).item() == pytest.approx((0.01 + 0.09) / 3)
    assert losses.sdf_smoothness_loss(
        torch.tensor([0.0, 0.2]), torch.tensor([0.1, 0.1])
    ).item() == pytest.approx(0.1)


def test_normal_smoothness_2d():
    n = torch.zeros(2, 2, 3)
    n[:, 1, 0] = 1.0  # right column differs by 1 in channel 0
    # x: 2 rows x 1 diff x 3 channels = 6 elements, two of them 1 -> 1/3; y: all zero.
    assert losses.normal_smoothness_2d_loss(n).item() == pytest.approx(1 / 3)
    n2 = torch.zeros(3, 1, 3)
    n2[2] = 2.0
    # width 2 (x diffs 0); y: 2 diffs x 2 columns x 3 channels, half of them (2-0)^2 = 4 -> mean 2
    assert losses.normal_smoothness_2d_loss(torch.cat([n2, n2], dim=1)).item() == pytest.approx(2.0)


def test_normal_smoothness_3d():
    n = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    npert = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert losses.normal_smoothness_3d_loss(n, npert).item() == pytest.approx(2 / 6)


def test_losses_are_differentiable():
    rgb = torch.rand(4, 4, 3, requires_grad=True)
    loss = losses.rgb_loss(rgb, torch.zeros(4, 4, 3)) + losses.normal_smoothness_2d_loss(rgb)
    loss.backward()
    assert rgb.grad is not None and rgb.grad.abs().sum() > 0


def test_normal_weight_schedule_paper():
    from humanref_cli.configs.optim import LossConfig

    cfg = LossConfig()
    assert [cfg.normal_multiplier(s) for s in (0, 2999, 3000, 7199, 7200, 11999)] == [1, 1, 10, 10, 100, 100]
