"""Previews of a textured mesh: a turntable video and a contact sheet (front/side/back, colour + normals).

Frames are rendered by the rasteriser of ``diff_raster`` (GL visibility, PyTorch texture lookups)
with ``supersample``× anti-aliasing and a simple Lambert + ambient shading on a white background:
``c = albedo · (ambient + (1 - ambient) · max(0, n · l))``, ``l`` pointing from the surface towards a
light slightly above the camera. The video is MP4 (H.264 through imageio-ffmpeg); if ffmpeg is not
usable it falls back to an animated GIF, and the caller gets the path actually written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from humanref_cli.geometry.formats import TexturedMesh, smooth_normals
from humanref_cli.io import atomic_path, write_png
from humanref_cli.render.camera import camera_to_world


def _downsample(image: torch.Tensor, factor: int) -> torch.Tensor:
    """Box filter ``(H*f, W*f, C) -> (H, W, C)``."""
    if factor == 1:
        return image
    h, w, c = image.shape[0] // factor, image.shape[1] // factor, image.shape[2]
    return image.reshape(h, factor, w, factor, c).mean(dim=(1, 3))


class PreviewRenderer:
    """Renders one textured mesh from any azimuth/elevation at ``size × size`` pixels.

    ``radius`` is the half-extent of the orthographic image plane (1.0 frames the scene box).
    Use as a context manager (it owns a GL context).
    """

    def __init__(self, mesh: TexturedMesh, size: int, supersample: int = 2, radius: float = 1.0, ambient=0.4):
        from humanref_cli.render.raster import MeshRasterizer

        self.size, self.supersample, self.ambient = int(size), int(supersample), float(ambient)
        self.raster = MeshRasterizer(
            self.size * self.supersample, self.size * self.supersample, radius=radius
        )
        self.vertices = torch.as_tensor(mesh.vertices, dtype=torch.float32)
        self.faces = torch.as_tensor(mesh.faces, dtype=torch.int64)
        self.uvs = torch.as_tensor(mesh.uvs, dtype=torch.float32)
        self.texture = torch.as_tensor(mesh.texture, dtype=torch.float32) / 255.0
        self.normals = torch.as_tensor(smooth_normals(mesh.vertices, mesh.faces))

    def __enter__(self) -> PreviewRenderer:
        return self

    def __exit__(self, *exc) -> None:
        self.raster.release()

    @torch.no_grad()
    def render(self, azimuth: float, elevation: float = 0.0) -> dict[str, np.ndarray]:
        """``albedo``, ``shaded`` and ``normal`` (``(n + 1) / 2``) images ``(S, S, 3)`` float32 on white."""
        from humanref_cli.render.diff_raster import render_textured

        c2w = camera_to_world(azimuth, elevation)
        out = render_textured(
            self.raster, self.vertices, self.faces, self.uvs, self.texture, c2w, (1.0, 1.0, 1.0), self.normals
        )
        mask = out["mask"][..., None]
        light = c2w[:3, 2] + 0.6 * c2w[:3, 1] - 0.3 * c2w[:3, 0]
        light = light / light.norm()
        lambert = (out["normal"] @ light).clamp(min=0.0)[..., None]
        shaded = out["rgb"] * (self.ambient + (1.0 - self.ambient) * lambert) * mask + (1.0 - mask)
        normal = (out["normal"] + 1.0) * 0.5 * mask + (1.0 - mask)
        images = {"albedo": out["rgb"], "shaded": shaded, "normal": normal}
        return {k: _downsample(v, self.supersample).clamp(0, 1).numpy() for k, v in images.items()}


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


def turntable_frames(
    mesh: TexturedMesh, frames: int = 60, size: int = 512, elevation: float = 5.0, supersample: int = 2
) -> list[np.ndarray]:
    """``frames`` shaded views ``(size, size, 3)`` uint8 at azimuths ``360 k / frames``, front first."""
    with PreviewRenderer(mesh, size, supersample) as renderer:
        return [to_uint8(renderer.render(360.0 * k / frames, elevation)["shaded"]) for k in range(frames)]


def write_video(path: str | Path, frames: list[np.ndarray], fps: int = 24) -> Path:
    """Write ``frames`` as an H.264 MP4 at ``path``; on any ffmpeg failure write ``path.gif`` instead.

    Returns the path written. Frame sizes must be even (yuv420p).
    """
    path = Path(path)
    try:
        import imageio.v2 as imageio
        import imageio_ffmpeg  # noqa: F401  (fails here, not mid-write, when ffmpeg is missing)

        with atomic_path(path.with_suffix(".mp4")) as tmp:
            writer = imageio.get_writer(
                tmp,
                format="FFMPEG",
                fps=fps,
                codec="libx264",
                pixelformat="yuv420p",
                macro_block_size=1,
                ffmpeg_log_level="error",
                output_params=["-crf", "20"],
            )
            with writer:
                for frame in frames:
                    writer.append_data(frame)
        return path.with_suffix(".mp4")
    except (ImportError, OSError, RuntimeError):
        return write_gif(path.with_suffix(".gif"), frames, fps)


def write_gif(path: str | Path, frames: list[np.ndarray], fps: int = 24) -> Path:
    """Looping animated GIF (Pillow) at ``fps`` frames per second."""
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    with atomic_path(path) as tmp:
        images[0].save(
            tmp, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0
        )
    return Path(path)


def contact_sheet(mesh: TexturedMesh, size: int = 384, supersample: int = 2) -> np.ndarray:
    """``(2 size, 3 size, 3)`` uint8: top row shaded colour, bottom row normals; front, side, back."""
    azimuths = (0.0, 90.0, 180.0)
    rows = {"shaded": [], "normal": []}
    with PreviewRenderer(mesh, size, supersample) as renderer:
        for az in azimuths:
            views = renderer.render(az, 0.0)
            for key in rows:
                rows[key].append(views[key])
    sheet = np.concatenate([np.concatenate(rows[k], axis=1) for k in ("shaded", "normal")], axis=0)
    return to_uint8(sheet)


def write_contact_sheet(path: str | Path, mesh: TexturedMesh, size: int = 384) -> Path:
    return write_png(path, contact_sheet(mesh, size))
