"""How far a workspace's fitted body (``prep/body.ply``) and silhouette (``prep/mask.png``) are from a
synthetic subject's ground truth.

The prep crop is not the subject's framing: a fitted world point goes world (y, z) -> crop pixel ->
photo pixel -> subject world, a uniform scale ``k = side / photo`` and a shift. Depth is unobservable
from the front: the fitted body is moved along depth to the ground truth's (``align="centroid"``, the
surfaces' mean depths, as every geometry metric here: eval/metrics.py) or, as measured before
docs/decisions.md 4k, so that the two depth extents share their centre (``align="bbox"``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from humanref_cli.eval.metrics import SURFACE_SAMPLES, align_depth, geometry_metrics


def crop_to_subject(crop_box: list[float], photo_size: int) -> tuple[float, np.ndarray]:
    """The similarity ``p_subject = k p_crop + t`` from the workspace's world (the prep crop's frame)
    to the subject's: ``(k, t (3,))`` given ``crop_box_photo`` ``(x0, y0, x1, y1)`` from
    ``prep/camera.json`` and the photo's side in pixels. Depth (``t_x``) is left at 0."""
    x0, y0, x1, _ = crop_box
    k = (x1 - x0) / photo_size
    return k, np.array([0.0, 2 * x0 / photo_size + k - 1, 1 - 2 * y0 / photo_size - k])


def crop_to_subject_world(vertices: np.ndarray, crop_box: list[float], photo_size: int) -> np.ndarray:
    """Fitted world vertices ``(N, 3)`` -> the subject's world frame (:func:`crop_to_subject`)."""
    k, t = crop_to_subject(crop_box, photo_size)
    return np.asarray(vertices, np.float64) * k + t


def subject_camera_in_crop(c2w: np.ndarray, k: float, t: np.ndarray, radius: float = 1.0):
    """The orthographic camera of the workspace's frame that sees what ``c2w (4, 4)`` with ``radius``
    sees in the subject's frame, where ``p_subject = k p_crop + t``: the same axes, the centre mapped
    back ``(c - t) / k`` and the half-width ``radius / k``. Returns ``(c2w (4, 4), radius)``."""
    out = np.array(c2w, np.float64, copy=True)
    out[:3, 3] = (out[:3, 3] - np.asarray(t, np.float64)) / k
    return out, radius / k


def body_fit_error(
    prep_dir: Path, subject_dir: Path, n_samples: int = SURFACE_SAMPLES, align: str = "centroid"
) -> dict[str, float]:
    """Chamfer / P2S (cm, subject scaled to 1.75 m) and normal consistency of the fitted body
    ``prep_dir/body.ply`` against ``subject_dir/gt/mesh.ply`` (:func:`crop_body_error`)."""
    import trimesh

    fitted = trimesh.load(Path(prep_dir) / "body.ply", process=False, force="mesh")
    return crop_body_error(fitted.vertices, fitted.faces, prep_dir, subject_dir, n_samples, align)


def crop_body_error(
    vertices: np.ndarray,
    faces: np.ndarray,
    prep_dir: Path,
    subject_dir: Path,
    n_samples: int = SURFACE_SAMPLES,
    align: str = "centroid",
) -> dict[str, float]:
    """The metrics of :func:`body_fit_error` for a body ``vertices (V, 3)``, ``faces (F, 3)`` in the
    crop frame of ``prep_dir/camera.json``, depth aligned by ``align`` (``centroid`` or ``bbox``)."""
    if align not in ("centroid", "bbox"):
        raise ValueError(f"align must be 'centroid' or 'bbox', got {align!r}")
    import trimesh

    cam = json.loads((Path(prep_dir) / "camera.json").read_text())
    gt_cam = json.loads((Path(subject_dir) / "gt" / "camera.json").read_text())
    gt = trimesh.load(Path(subject_dir) / "gt" / "mesh.ply", process=False, force="mesh")
    v = crop_to_subject_world(vertices, cam["crop_box_photo"], int(gt_cam["size"][0]))
    gv = np.asarray(gt.vertices, np.float64)
    faces, gt_faces = np.asarray(faces), np.asarray(gt.faces)
    if align == "bbox":
        v[:, 0] += (gv[:, 0].min() + gv[:, 0].max() - v[:, 0].min() - v[:, 0].max()) / 2
    else:
        v = align_depth(v, faces, gv, gt_faces, n_samples=n_samples)
    return geometry_metrics(v, faces, gv, gt_faces, n_samples=n_samples)


def silhouette_iou(prep_dir: Path, subject_dir: Path) -> float:
    """IoU of ``prep/mask.png`` mapped back onto the photo (``photo_to_crop`` of ``prep/camera.json``,
    pixel centres at ``i + 0.5``) against ``subject_dir/gt/mask.png``."""
    import cv2
    from PIL import Image

    from humanref_cli.perception.silhouette import mask_iou

    cam = json.loads((Path(prep_dir) / "camera.json").read_text())
    m = np.asarray(cam["photo_to_crop"], np.float64)
    gt = np.asarray(Image.open(Path(subject_dir) / "gt" / "mask.png").convert("L")) > 127
    crop = (np.asarray(Image.open(Path(prep_dir) / "mask.png").convert("L")) > 127).astype(np.float32)
    h, w = gt.shape
    xs, ys = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    map_x = (m[0, 0] * xs + m[0, 1] * ys + m[0, 2] - 0.5).astype(np.float32)
    map_y = (m[1, 0] * xs + m[1, 1] * ys + m[1, 2] - 0.5).astype(np.float32)
    mask = cv2.remap(crop, map_x, map_y, cv2.INTER_LINEAR, borderValue=0) > 0.5
    return mask_iou(mask, gt)
