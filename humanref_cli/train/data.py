"""The supervision of the reference and back views, read from ``ws/prep`` (method.md §2, §5.2).

Everything is resampled once to the loss resolution ``L`` (area filter): the rendered maps are resized
to ``L`` before the losses, as the released code resizes them to 512². The reference colours are kept
premultiplied by the mask so that compositing on the step's background colour ``c`` is exact at any
resolution: ``I_ref = rgb·M + c·(1 - M)``. The back view's targets are the horizontally mirrored mask
(valid under orthographic projection), the back normal map (prep already flipped it) and, for the
no-guidance fallback only, the mirrored reference colours with the face covered by the hair colour
(``back_reference.py``; the mirrored face would be painted onto the back of the head).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from humanref_cli.errors import UpstreamError
from humanref_cli.io import read_png
from humanref_cli.train.back_reference import cover_face

PREP_FILES = ("image.png", "mask.png", "normal_front.npy", "normal_back.npy", "body.ply")
FACE_FILES = ("parsing.png", "keypoints.json")  # where the face is, for the back view's fallback colours


@dataclass(frozen=True)
class TrainData:
    """Targets at the loss resolution ``L``, on the training device.

    ``premult (L, L, 3)`` reference RGB times mask, ``mask (L, L)`` soft mask in [0, 1],
    ``normal_front``/``normal_back (L, L, 3)`` unit world normals (0 outside), ``premult_full`` and
    ``mask_full`` the same at the prep resolution (the guidance's reference), ``premult_back (L, L, 3)``
    the fallback's back-view colours before mirroring (``premult`` with the face covered; None: ``premult``).
    """

    premult: torch.Tensor
    mask: torch.Tensor
    normal_front: torch.Tensor
    normal_back: torch.Tensor
    premult_full: torch.Tensor
    mask_full: torch.Tensor
    premult_back: torch.Tensor | None = None

    @property
    def mask_back(self) -> torch.Tensor:
        return self.mask.flip(1)

    def reference(self, background: torch.Tensor, back: bool = False) -> torch.Tensor:
        """``(L, L, 3)`` reference composited on ``background (3,)``; for the back view the fallback's
        colours (``premult_back``), mirrored.

        ``background`` may live on the CPU (the views are drawn there, for device-independent draws)."""
        premult = self.premult_back if back and self.premult_back is not None else self.premult
        ref = premult + background.to(premult) * (1.0 - self.mask[..., None])
        return ref.flip(1) if back else ref

    def reference_full(self, background: torch.Tensor) -> torch.Tensor:
        return self.premult_full + background.to(self.premult_full) * (1.0 - self.mask_full[..., None])


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    import cv2

    if image.shape[0] == size and image.shape[1] == size:
        return image
    interp = cv2.INTER_AREA if image.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interp)


def _unit(normals: np.ndarray) -> np.ndarray:
    """Renormalise (area filtering shortens normals at the silhouette edge); zeros stay zero."""
    norm = np.linalg.norm(normals, axis=-1, keepdims=True)
    return np.where(norm > 1e-6, normals / np.maximum(norm, 1e-6), 0.0).astype(np.float32)


def load_train_data(
    prep_dir: Path, loss_res: int, device: torch.device, cover_back_face: bool = True
) -> TrainData:
    """Read ``image.png``, ``mask.png`` and the two normal maps of a prep folder and, for the back view's
    fallback colours, cover the face as ``parsing.png`` and ``keypoints.json`` place it (unless
    ``cover_back_face`` is false or a prep made without them lacks them: then the photo as it is)."""
    prep_dir = Path(prep_dir)
    for name in PREP_FILES:
        if not (prep_dir / name).exists():
            raise UpstreamError(
                f"{prep_dir / name} is missing", hint=f"run `humanref prep PHOTO {prep_dir.parent}`"
            )
    rgba = read_png(prep_dir / "image.png").astype(np.float32) / 255.0
    mask = read_png(prep_dir / "mask.png").astype(np.float32)
    mask = (mask[..., 0] if mask.ndim == 3 else mask) / mask.max(initial=1.0)
    premult = rgba[..., :3] * mask[..., None]
    covered = None  # None: the back view's colours are the photo's (``premult``), nothing to build
    if cover_back_face and all((prep_dir / name).exists() for name in FACE_FILES):
        back, covered = cover_face(
            rgba[..., :3], mask, read_png(prep_dir / "parsing.png"), *_keypoints(prep_dir)
        )
    normals = [np.load(prep_dir / f"normal_{side}.npy").astype(np.float32) for side in ("front", "back")]

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(device)

    return TrainData(
        premult=t(_resize(premult, loss_res)),
        mask=t(_resize(mask, loss_res)),
        normal_front=t(_unit(_resize(normals[0], loss_res))),
        normal_back=t(_unit(_resize(normals[1], loss_res))),
        premult_full=t(premult),
        mask_full=t(mask),
        premult_back=None if covered is None else t(_resize(back * mask[..., None], loss_res)),
    )


def _keypoints(prep_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """``keypoints.json``'s landmarks: crop pixels ``(33, 2)`` and visibility ``(33,)``."""
    marks = json.loads((prep_dir / "keypoints.json").read_text())["landmarks"]
    return np.array([[m["u"], m["v"]] for m in marks]), np.array([m["visibility"] for m in marks])
