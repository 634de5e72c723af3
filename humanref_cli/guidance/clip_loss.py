"""CLIP image and text losses of non-front views before step 2000 (method.md §5.2 terms 9–10).

    L_img  = -cos(CLIP(I_hat with its face band x O painted c), CLIP(I_ref with its face box painted c))
    L_text = -cos(CLIP(I_hat), CLIP_text(prompt + view suffix))

Painting the face out keeps CLIP from pasting the front face onto the back of the head.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from humanref_cli.guidance.loading import freeze, model_dtype
from humanref_cli.guidance.prompts import VIEW_SUFFIXES
from humanref_cli.guidance.regions import Regions, band_mask, box_mask

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _features(out) -> torch.Tensor:
    """transformers 5 may wrap projected features in an output object; take the tensor."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


class ClipLosses:
    """Frozen CLIP with per-view text features; ``__call__`` returns ``L_img + L_text`` (scalar)."""

    def __init__(self, model, text_features: dict[str, torch.Tensor], regions: Regions | None):
        self.model = model
        self.text_features = text_features
        self.regions = regions
        vision = model.config.vision_config
        self.size = int(vision.image_size)
        p = next(model.parameters())
        self.mean = torch.tensor(CLIP_MEAN, device=p.device).view(1, 3, 1, 1)
        self.std = torch.tensor(CLIP_STD, device=p.device).view(1, 3, 1, 1)

    @classmethod
    @torch.no_grad()
    def load(
        cls, path: str | Path, prompt: str, regions: Regions | None, device, half_precision: bool = True
    ):
        from transformers import CLIPModel, CLIPTokenizer

        dtype = model_dtype(device, half_precision)
        model = CLIPModel.from_pretrained(path, local_files_only=True, dtype=dtype).to(device)
        freeze(model)
        tokenizer = CLIPTokenizer.from_pretrained(path, local_files_only=True)
        views = list(VIEW_SUFFIXES)
        ids = tokenizer([prompt + VIEW_SUFFIXES[v] for v in views], padding=True, return_tensors="pt")
        feats = _features(model.get_text_features(**ids.to(device))).float()
        feats = F.normalize(feats, dim=-1)
        return cls(model, {v: feats[i] for i, v in enumerate(views)}, regions)

    def image_features(self, image: torch.Tensor) -> torch.Tensor:
        """Unit CLIP features ``(B, D)`` float32 of images ``(B, 3, H, W)`` in [0, 1] (differentiable)."""
        x = F.interpolate(image.float(), (self.size, self.size), mode="bilinear", align_corners=False)
        x = (x - self.mean) / self.std
        dtype = next(self.model.parameters()).dtype
        return F.normalize(_features(self.model.get_image_features(pixel_values=x.to(dtype))).float(), dim=-1)

    def face_masks(self, size: tuple[int, int], device) -> tuple[torch.Tensor, torch.Tensor]:
        """Face row band and face box ``(1, 1, H, W)`` at ``size`` (zeros without a face box)."""
        if self.regions is None or "face" not in self.regions.boxes:
            z = torch.zeros(1, 1, *size, device=device)
            return z, z
        box = self.regions.boxes["face"]
        masks = torch.stack([band_mask(box, self.regions.size), box_mask(box, self.regions.size)])[None]
        masks = F.interpolate(masks, size=size, mode="nearest").to(device)
        return masks[:, :1], masks[:, 1:]

    def __call__(self, rgb, opacity, ref_rgb, bg, view: str) -> torch.Tensor:
        """``rgb``/``ref_rgb (1, 3, H, W)`` in [0, 1], ``opacity (1, 1, H, W)``, ``bg (3,)``; scalar loss."""
        band, box = self.face_masks(tuple(rgb.shape[-2:]), rgb.device)
        c = bg.view(1, 3, 1, 1).to(rgb)
        paint = band * opacity.detach()
        render_face_out = rgb * (1 - paint) + c * paint
        with torch.no_grad():
            box_ref = F.interpolate(box, size=ref_rgb.shape[-2:], mode="nearest")
            ref_feat = self.image_features(ref_rgb * (1 - box_ref) + c * box_ref)
        feats = self.image_features(torch.cat([render_face_out, rgb]))
        loss_image = -(feats[0] * ref_feat[0]).sum()
        loss_text = -(feats[1] * self.text_features[view]).sum()
        return loss_image + loss_text
