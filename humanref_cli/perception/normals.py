"""Front and back normal maps in the world frame (method.md §2.3, contracts: frames and cameras).

Default: the fitted body's normals rendered by the front camera (azimuth 0) and the back camera
(azimuth 180). The back camera's image is the front image mirrored (orthographic, image right is
world -y), which is the released code's horizontally flipped back map; its silhouette is the mirrored
front silhouette. Silhouette pixels the naked body does not cover (hair, loose clothes) take the
normal of the nearest covered pixel; everything outside the silhouette is 0.

With Marigold normals present, the front map is Marigold's prediction converted from its camera
frame (x right, y up, z towards the viewer) to the world: the front camera's right, up and back axes
are world +y, +z and +x, so ``n_world = (n_z, n_x, n_y)``.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np

from humanref_cli.errors import MissingModel


def fill_from_nearest(normals: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``normals (H, W, 3)`` inside ``mask (H, W)`` with uncovered (zero) pixels given the nearest
    covered pixel's normal; 0 outside the mask."""
    from scipy import ndimage

    covered = (np.abs(normals).sum(-1) > 0) & mask
    if not covered.any():
        return np.zeros_like(normals)
    _, (iy, ix) = ndimage.distance_transform_edt(~covered, return_indices=True)
    out = normals[iy, ix]
    out[~mask] = 0.0
    return out.astype(np.float32)


def body_normal_maps(
    vertices: np.ndarray, faces: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(front, back)`` world normal maps ``(H, W, 3)`` float32 of a world-frame body, ``mask`` the
    front silhouette ``(H, W)`` bool (the back map uses it mirrored)."""
    from humanref_cli.render.camera import camera_to_world
    from humanref_cli.render.raster import MeshRasterizer

    h, w = mask.shape
    with MeshRasterizer(w, h, supersample=2) as raster:
        front = raster.normals(vertices, faces, camera_to_world(0.0, 0.0, 1.0))
        back = raster.normals(vertices, faces, camera_to_world(180.0, 0.0, 1.0))
    return fill_from_nearest(front, mask), fill_from_nearest(back, mask[:, ::-1])


def marigold_to_world(camera_normals: np.ndarray) -> np.ndarray:
    """Marigold camera-frame normals ``(H, W, 3)`` (x right, y up, z to the viewer) -> world frame
    of the front camera ``(H, W, 3)``: ``(n_z, n_x, n_y)``."""
    n = np.asarray(camera_normals, np.float32)
    return np.stack([n[..., 2], n[..., 0], n[..., 1]], axis=-1)


@contextmanager
def _diffusers_bars_hidden():
    """Hide diffusers' "Loading pipeline components" bar while loading: it would bypass --quiet
    and interleave with prep's own progress. diffusers has only this process-wide switch, so the
    previous state is restored afterwards."""
    from diffusers.utils import logging as diffusers_logging

    was_enabled = diffusers_logging.is_progress_bar_enabled()
    diffusers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            diffusers_logging.enable_progress_bar()


def marigold_front_normals(model_dir: Path, rgb: np.ndarray, mask: np.ndarray, device="cpu") -> np.ndarray:
    """Front world normal map ``(H, W, 3)`` from Marigold (diffusers ``MarigoldNormalsPipeline``),
    unit length inside ``mask`` and 0 outside."""
    import torch

    try:
        from diffusers import MarigoldNormalsPipeline
    except ImportError as e:
        raise MissingModel(f"diffusers cannot load Marigold ({e})", hint="pip install -U diffusers") from None
    from PIL import Image

    dtype = torch.float16 if torch.device(device).type == "cuda" else torch.float32
    variant = "fp16" if any(Path(model_dir).glob("unet/*.fp16.safetensors")) else None
    # `dtype`: diffusers 0.42 deprecates `torch_dtype`; low_cpu_mem_usage=False: accelerate is not a
    # dependency, and without it diffusers warns and falls back to this anyway
    with _diffusers_bars_hidden():
        pipe = MarigoldNormalsPipeline.from_pretrained(
            model_dir, local_files_only=True, variant=variant, dtype=dtype, low_cpu_mem_usage=False
        )
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)  # its tqdm bars would bypass --quiet
    out = pipe(Image.fromarray(rgb), output_type="np", generator=torch.Generator(device="cpu").manual_seed(0))
    pred = np.asarray(out.prediction)[0]  # (H, W, 3) in [-1, 1], camera frame
    if pred.shape[:2] != mask.shape:
        import cv2

        pred = cv2.resize(pred, (mask.shape[1], mask.shape[0]), interpolation=cv2.INTER_LINEAR)
    world = marigold_to_world(pred)
    world /= np.maximum(np.linalg.norm(world, axis=-1, keepdims=True), 1e-8)
    world[~mask] = 0.0
    return world.astype(np.float32)


def to_png(normals: np.ndarray) -> np.ndarray:
    """World normals ``(H, W, 3)`` -> uint8 ``(n + 1) / 2 · 255`` image, 0 where the normal is 0
    (outside the silhouette), as the synthetic ground truth stores them."""
    png = np.clip(np.round((normals + 1.0) * 127.5), 0, 255).astype(np.uint8)
    png[np.abs(normals).sum(-1) == 0] = 0
    return png
