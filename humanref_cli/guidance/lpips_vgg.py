"""LPIPS v0.1 with VGG16 features (Zhang et al. 2018), without the ``lpips`` package.

    d(x, y) = sum_l mean_hw( w_l . (f_l(x)/|f_l(x)| - f_l(y)/|f_l(y)|)^2 )

``f_l`` are the relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 activations of torchvision's VGG16 on
inputs scaled to [-1, 1] and shifted/scaled by LPIPS's ScalingLayer; ``w_l`` the non-negative linear
heads of ``vgg.pth``. Files (models.lock role ``lpips``): ``vgg16-397923af.pth`` and ``vgg.pth``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

SLICES = ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))
CHANNELS = (64, 128, 256, 512, 512)


class LPIPSVGG(nn.Module):
    """``forward(x, y) -> scalar`` mean LPIPS over the batch for images ``(B, 3, H, W)`` in [0, 1]."""

    def __init__(self, features: nn.Sequential, lin_weights: list[torch.Tensor]):
        super().__init__()
        self.slices = nn.ModuleList(nn.Sequential(*features[a:b]) for a, b in SLICES)
        self.lins = nn.ParameterList(
            nn.Parameter(w.reshape(1, -1, 1, 1), requires_grad=False) for w in lin_weights
        )
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = (torch.cat([x, y]).float() * 2 - 1 - self.shift) / self.scale
        total = 0.0
        for layer, w in zip(self.slices, self.lins, strict=True):
            h = layer(h)
            fx, fy = (h / (h.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)).chunk(2)
            total = total + ((fx - fy) ** 2 * w).sum(1).mean(dim=(1, 2))
        return total.mean()


def load_lpips(path: str | Path, device) -> LPIPSVGG:
    """Load VGG16 features and the LPIPS heads from a folder (weights only, no pickles executed)."""
    from torchvision.models import vgg16

    path = Path(path)
    vgg = vgg16(weights=None)
    state = torch.load(path / "vgg16-397923af.pth", map_location="cpu", weights_only=True)
    vgg.features.load_state_dict(
        {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
    )
    heads = torch.load(path / "vgg.pth", map_location="cpu", weights_only=True)
    lins = [heads[f"lin{i}.model.1.weight"] for i in range(len(SLICES))]
    model = LPIPSVGG(vgg.features, lins).to(device).eval()
    model.requires_grad_(False)
    return model
