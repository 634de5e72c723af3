"""Region masks for region-aware reference attention (method.md §2.4, §7.1).

``prep/regions.json`` (written by prep) has the schema::

    {"size": [H, W],                       # pixels of the square crop (512 by default)
     "parts": {"head":  {"box": [x0, y0, x1, y1]},
               "upper": {"box": [...]}, "lower": {"box": [...]}, "feet": {"box": [...]},
               "face":  {"box": [...]}}}

Boxes are already padded as method.md §2.4 says, in pixels of the crop, ``x0, y0`` inclusive and
``x1, y1`` exclusive. A part may be missing; its channel is then empty. ``prep/mask.png`` is the
silhouette M (uint8 0/255), the same size.

Channels (R = 5 for strategies 0 and 1; R = 2 for strategy 2; no masks for strategy 3):

- reference ``M_ref = [1 - M, head_box ∩ M, upper_box ∩ M, lower_box ∩ M, feet_box ∩ M]``
- render    ``M_ren = [1 - O, O band_head, O band_upper, O band_lower, O band_feet]``

where ``band_k`` is the full-width row band of part k's reference box and O the detached rendered
opacity: correspondence between views is by image height (orthographic camera, |elevation| <= 20°).
Masks are nearest-resized to the latent grid and thresholded at 0.5 (:func:`to_grid`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from humanref_cli.errors import UpstreamError

BODY_PARTS = ("head", "upper", "lower", "feet")


@dataclass(frozen=True)
class Regions:
    """The reference silhouette ``mask (H, W)`` float {0, 1} and part boxes ``name -> (x0, y0, x1, y1)``."""

    mask: torch.Tensor
    boxes: dict[str, tuple[int, int, int, int]]

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.mask.shape)


def load_regions(prep_dir: str | Path) -> Regions:
    """Read ``regions.json`` and ``mask.png`` from a prep folder (missing files: UpstreamError)."""
    from PIL import Image

    prep_dir = Path(prep_dir)
    try:
        data = json.loads((prep_dir / "regions.json").read_text())
        mask = np.asarray(Image.open(prep_dir / "mask.png").convert("L")) > 127
        size = tuple(int(v) for v in data["size"])
        boxes = {name: tuple(int(v) for v in part["box"]) for name, part in data.get("parts", {}).items()}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UpstreamError(f"cannot read prep regions: {e!r}", hint="rerun `humanref prep`") from e
    if any(len(b) != 4 for b in boxes.values()):
        raise UpstreamError("regions.json boxes must be [x0, y0, x1, y1]", hint="rerun `humanref prep`")
    if size != mask.shape:
        raise UpstreamError(
            f"regions.json size {data['size']} differs from mask.png {list(mask.shape)}",
            hint="rerun `humanref prep`",
        )
    return Regions(torch.from_numpy(mask).float(), boxes)


def box_mask(box, size: tuple[int, int]) -> torch.Tensor:
    """``(H, W)`` float mask of a box ``(x0, y0, x1, y1)`` (clipped to the image)."""
    m = torch.zeros(size)
    if box is not None:
        x0, y0, x1, y1 = box
        m[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = 1.0
    return m


def band_mask(box, size: tuple[int, int]) -> torch.Tensor:
    """``(H, W)`` float mask of the full-width row band ``y0 <= row < y1`` of a box."""
    m = torch.zeros(size)
    if box is not None:
        m[max(box[1], 0) : max(box[3], 0), :] = 1.0
    return m


def reference_masks(regions: Regions, strategy: int) -> torch.Tensor:
    """Reference region masks ``(R, H, W)`` in {0, 1} (R = 5 for strategies 0/1, 2 for strategy 2)."""
    m = regions.mask
    if strategy == 2:
        return torch.stack([1 - m, m])
    parts = [box_mask(regions.boxes.get(p), regions.size) * m for p in BODY_PARTS]
    return torch.stack([1 - m, *parts])


def render_masks(opacity: torch.Tensor, regions: Regions, strategy: int) -> torch.Tensor:
    """Render region masks ``(R, H, W)`` from the opacity ``(H, W)`` (any size; bands are rescaled).

    Bands are defined on the reference crop's rows and nearest-resized to the opacity's size.
    """
    o = opacity.detach().float().reshape(opacity.shape[-2:])
    if strategy == 2:
        return torch.stack([1 - o, o])
    bands = torch.stack([band_mask(regions.boxes.get(p), regions.size) for p in BODY_PARTS])
    bands = F.interpolate(bands[None], size=o.shape, mode="nearest")[0].to(o.device)
    return torch.cat([(1 - o)[None], o[None] * bands])


def to_grid(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-resize ``(R, H, W)`` masks to ``size`` and binarise at 0.5: ``(R, h, w)`` bool."""
    return F.interpolate(masks[None].float(), size=size, mode="nearest")[0] > 0.5


def token_grid(latent_hw: tuple[int, int], n_tokens: int) -> tuple[int, int]:
    """The ``(h, w)`` token grid of a UNet block with ``n_tokens`` tokens, halving the latent with ceil."""
    h, w = latent_hw
    while h * w > n_tokens:
        h, w = (h + 1) // 2, (w + 1) // 2
    if h * w != n_tokens:
        raise ValueError(f"{n_tokens} tokens do not match a halving of the {latent_hw} latent grid")
    return h, w
