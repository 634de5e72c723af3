"""A ``ws/prep`` folder of an ellipsoid "person", computed in closed form (no anny, no OpenGL).

For tests that need the optimisation stages to run where the synthetic subjects cannot be made (the
GPU machine has neither anny's cache nor an OpenGL stack): the mask and the front/back normal maps are
the exact orthographic silhouette and normals of the ellipsoid ``(x/a)^2 + (y/b)^2 + (z/c)^2 = 1`` seen
by the front (azimuth 0) and back (azimuth 180) cameras of ``render/camera.py``; the "fitted body" is the
same ellipsoid shrunk by ``body_offset``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from humanref_cli.io import save_npy, write_json, write_png, write_text
from humanref_cli.testing.synth_prep import record_prep
from humanref_cli.workspace import Workspace

AXES = (0.16, 0.26, 0.8)
"""Half axes (x depth, y width, z height) in world units: a standing body's proportions."""


def ellipsoid_view(azimuth: float, res: int, axes=AXES) -> tuple[np.ndarray, np.ndarray]:
    """Mask ``(res, res)`` bool and unit world normals ``(res, res, 3)`` (0 outside) of one view.

    A ray ``o + t d`` meets the ellipsoid where ``|D (o + t d)|^2 = 1`` with ``D = diag(1/axes)``: the
    smaller root of ``A t^2 + 2 B t + C = 0``, ``A = |D d|^2``, ``B = (D o).(D d)``, ``C = |D o|^2 - 1``;
    the normal there is ``D^2 p`` normalised.
    """
    from humanref_cli.render.camera import camera_to_world, orthographic_rays

    origins, dirs = (r.double().numpy() for r in orthographic_rays(camera_to_world(azimuth, 0.0), res, res))
    inv = 1.0 / np.asarray(axes)
    do, dd = origins * inv, dirs * inv
    a, b, c = (dd * dd).sum(-1), (do * dd).sum(-1), (do * do).sum(-1) - 1.0
    disc = b * b - a * c
    mask = disc > 0
    t = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
    normal = (origins + t[..., None] * dirs) * inv**2
    normal /= np.maximum(np.linalg.norm(normal, axis=-1, keepdims=True), 1e-12)
    return mask, np.where(mask[..., None], normal, 0.0).astype(np.float32)


def write_ellipsoid_prep(ws: Workspace, res: int = 64, body_offset: float = 0.01) -> Path:
    """Write ``ws/prep`` (image, mask, normal maps, body, regions, prompt) and record prep as done."""
    import trimesh

    prep = ws.root / "prep"
    prep.mkdir(parents=True, exist_ok=True)
    mask, front = ellipsoid_view(0.0, res)
    _, back = ellipsoid_view(180.0, res)
    rgb = np.clip(0.55 + 0.35 * front[..., [2, 1, 0]], 0.0, 1.0)  # a shading the colour head can fit
    alpha = mask.astype(np.uint8) * 255
    write_png(prep / "image.png", np.dstack([(rgb * 255).astype(np.uint8), alpha]))
    write_png(prep / "mask.png", alpha)
    save_npy(prep / "normal_front.npy", front)
    save_npy(prep / "normal_back.npy", back)
    write_text(prep / "prompt.txt", "a photo of a person, high quality\n")
    rows, cols = np.nonzero(mask)
    top, bottom, left, right = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
    bands = np.linspace(top, bottom, 5).astype(int)  # head, upper, lower, feet: quarters of the height
    parts = {
        name: {"box": [left, int(bands[i]), right, int(bands[i + 1])]}
        for i, name in enumerate(("head", "upper", "lower", "feet"))
    }
    parts["face"] = dict(parts["head"])
    write_json(prep / "regions.json", {"size": [res, res], "parts": parts})
    body = trimesh.creation.icosphere(subdivisions=4, radius=1.0)
    body.apply_scale(np.asarray(AXES) - body_offset)
    (prep / "body.ply").write_bytes(body.export(file_type="ply", encoding="binary"))
    record_prep(ws, "ellipsoid")
    return prep
