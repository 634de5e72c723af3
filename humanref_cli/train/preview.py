"""Preview sheets of a field during training: front, side and back views, colour over normals.

A 2x3 sheet: top row the colour on white (``C + (1 - O)``), bottom row the normal map as ``(n + 1) / 2``
on white. Rendering runs under ``torch.random.fork_rng`` so a preview never shifts the training RNG
(exact resume must not depend on when previews happen).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from humanref_cli.io import write_png
from humanref_cli.render.camera import camera_to_world

PREVIEW_AZIMUTHS = (0.0, 90.0, 180.0)


@torch.no_grad()
def render_sheet(
    field, occupancy, size: int, chunk: int, step_size: float, azimuths=PREVIEW_AZIMUTHS
) -> np.ndarray:
    """``(2 size, len(azimuths) size, 3)`` uint8 sheet: colour row over normal row."""
    from humanref_cli.render.volume import render_view

    device = next(field.parameters()).device
    white = torch.ones(3, device=device)
    colours, normals = [], []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        for az in azimuths:
            out = render_view(
                field,
                camera_to_world(az, 0.0).to(device),
                size,
                size,
                white,
                occ=occupancy,
                ray_chunk=chunk,
                step_size=step_size,
            )
            opacity = out["opacity"]
            colours.append(out["rgb"])
            normals.append((out["normal_unit"] + 1) / 2 * opacity + (1 - opacity))
    sheet = torch.cat([torch.cat(colours, dim=1), torch.cat(normals, dim=1)], dim=0)
    return (sheet.clamp(0, 1) * 255 + 0.5).byte().cpu().numpy()


def write_preview(field, occupancy, path: Path, optim_cfg) -> Path:
    return write_png(
        path, render_sheet(field, occupancy, optim_cfg.preview_res, optim_cfg.chunk, optim_cfg.step_size)
    )
