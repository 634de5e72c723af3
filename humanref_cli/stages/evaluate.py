"""``humanref eval ws/ --gt DIR``: metrics of a stage's result against a synthetic subject's ground truth.

Geometry: Chamfer, P2S (cm, subject height set to 1.75 m) and normal consistency of ``<stage>/mesh.ply``
and, for reference, of the fitted body ``prep/body.ply`` alone, both mapped from the crop's world frame
to the subject's (``prep/camera.json``'s crop box; the identity when prep was built from the ground
truth). Appearance: PSNR/SSIM of the field's front view against the input crop (``prep/image.png``)
and of the other views against ``gt/views`` (``az_XXX.png``), rendered through the subject's cameras
mapped into the workspace's frame with the geometry's depth alignment, everything composited on white.
Writes ``ws/eval.json`` and returns the same dict.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from humanref_cli.errors import UsageError
from humanref_cli.eval.body_fit import crop_to_subject, subject_camera_in_crop
from humanref_cli.eval.metrics import depth_offset, geometry_metrics, psnr, ssim
from humanref_cli.io import read_png, write_json
from humanref_cli.workspace import Workspace

# Orthographic: the distance changes no pixel, but rays start at the camera, which must sit outside
# the scene box; the mapped camera moves with the crop and the depth alignment.
_VIEW_DISTANCE = 3.0


def _load_mesh(path: Path):
    import trimesh

    mesh = trimesh.load(path, process=False, force="mesh")
    return np.asarray(mesh.vertices), np.asarray(mesh.faces)


def _crop_to_subject(ws: Workspace, gt_dir: Path) -> tuple[float, np.ndarray]:
    """``(k, t)`` of ``p_subject = k p_workspace + t`` (:func:`crop_to_subject`; the identity when
    prep did not crop, as when it was built from the ground truth)."""
    cam_path = ws.root / "prep" / "camera.json"
    if not cam_path.exists():
        return 1.0, np.zeros(3)
    box = json.loads(cam_path.read_text())["crop_box_photo"]
    photo = int(json.loads((gt_dir / "gt" / "camera.json").read_text())["size"][0])
    return crop_to_subject(box, photo)


def _geometry(v, f, gt_v, gt_f) -> tuple[dict, dict, float]:
    """Metrics after the depth alignment, as placed, and the alignment's depth shift."""
    shift = depth_offset(v, f, gt_v, gt_f)
    aligned = geometry_metrics(v + np.array([shift, 0.0, 0.0]), f, gt_v, gt_f)
    return aligned, geometry_metrics(v, f, gt_v, gt_f), shift


def _on_white(rgba: np.ndarray, size: int) -> np.ndarray:
    """uint8 RGBA -> float RGB ``(size, size, 3)`` composited on white (area-resized when needed)."""
    import cv2

    img = rgba.astype(np.float32) / 255.0
    rgb = img[..., :3] * img[..., 3:4] + (1.0 - img[..., 3:4])
    if rgb.shape[0] != size:
        rgb = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
    return rgb


def _render_on_white(
    field, occupancy, c2w: np.ndarray, radius: float, size: int, chunk: int, step_size: float
) -> np.ndarray:
    import torch

    from humanref_cli.render.volume import render_view

    device = next(field.parameters()).device
    with torch.no_grad():
        out = render_view(
            field,
            torch.as_tensor(c2w, dtype=torch.float32, device=device),
            size,
            size,
            torch.ones(3, device=device),
            occ=occupancy,
            radius=radius,
            ray_chunk=chunk,
            step_size=step_size,
        )
    return out["rgb"].clamp(0, 1).cpu().numpy()


def view_camera(azimuth: float, k: float = 1.0, t: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """``(c2w (4, 4), radius)``: the subject's orthographic camera at ``azimuth`` (elevation 0, as
    ``synth`` renders ``gt/views``) seen from the workspace's frame, where ``p_subject = k p + t``."""
    from humanref_cli.render.camera import camera_to_world

    c2w = camera_to_world(float(azimuth), 0.0, _VIEW_DISTANCE).double().numpy()
    return subject_camera_in_crop(c2w, k, np.zeros(3) if t is None else t)


def gt_views(gt_dir: Path) -> dict[int, Path]:
    """``{azimuth: path}`` of the subject's ``gt/views/az_XXX.png`` renders."""
    views = {}
    for p in sorted((gt_dir / "gt" / "views").glob("az_*.png")):
        m = re.fullmatch(r"az_(\d+)\.png", p.name)
        if m:
            views[int(m.group(1))] = p
    return views


def run_eval(
    ws: Workspace, gt_dir: Path, rt, *, stage: str = "refine", res: int | None = None, chunk: int = 65536
) -> dict[str, Any]:
    """Metrics of ``stage`` (refine or coarse) against ``gt_dir``; ``res`` is the render size (input size)."""
    from humanref_cli.geometry.field import load_field
    from humanref_cli.render.occupancy import OccupancyGrid

    if stage not in ("coarse", "refine"):
        raise UsageError(f"--stage must be coarse or refine, got {stage!r}")
    if res is not None and not 16 <= res <= 2048:
        raise UsageError(f"--res must be between 16 and 2048 pixels, got {res}", hint="e.g. --res 256")
    gt_dir = Path(gt_dir)
    if not (gt_dir / "gt" / "mesh.ply").exists():
        raise UsageError(
            f"{gt_dir} is not a synthetic subject (no gt/mesh.ply)",
            hint="pass the folder written by `humanref synth`",
        )
    ws.require(stage)
    stage_dir = ws.root / stage
    gt_v, gt_f = _load_mesh(gt_dir / "gt" / "mesh.ply")
    result: dict[str, Any] = {"stage": stage, "gt": str(gt_dir)}
    k, t = _crop_to_subject(ws, gt_dir)
    v, f = _load_mesh(stage_dir / "mesh.ply")
    result["geometry"], result["geometry_as_placed"], shift = _geometry(v * k + t, f, gt_v, gt_f)
    body = ws.root / "prep" / "body.ply"
    if body.exists():
        v, f = _load_mesh(body)
        result["body"], result["body_as_placed"], _ = _geometry(v * k + t, f, gt_v, gt_f)

    field = load_field(stage_dir, rt.device)
    # render with the stage's own marching step (the cpu preset uses a coarser one)
    samples = (ws.record(stage) or {}).get("config", {}).get("optim", {}).get("samples_per_ray", 512)
    step_size = 1.732 * 2 / samples
    occupancy = OccupancyGrid(step_size=step_size).to(rt.device)
    occupancy.build(field)
    image = read_png(ws.root / "prep" / "image.png")
    size = res or image.shape[0]
    front = _render_on_white(field, occupancy, *view_camera(0.0), size, chunk, step_size)
    target = _on_white(image, size)
    result["front"] = {"psnr": psnr(front, target), "ssim": ssim(front, target), "res": size}
    # The other views are the subject's cameras, seen in the workspace's frame with the geometry's
    # depth alignment: the depth prep chose is a guess (module docstring of eval/metrics.py), and a
    # side view would otherwise score that guess as a sideways shift of the whole person.
    t_aligned = t + np.array([shift, 0.0, 0.0])
    result["novel_frame"] = {"scale": k, "shift": t_aligned.tolist()}
    per_view = {}
    for az, path in gt_views(gt_dir).items():
        if az == 0:
            continue
        pred = _render_on_white(field, occupancy, *view_camera(az, k, t_aligned), size, chunk, step_size)
        gt = _on_white(read_png(path), size)
        per_view[f"az_{az:03d}"] = {"psnr": psnr(pred, gt), "ssim": ssim(pred, gt)}
    if per_view:
        result["novel"] = {
            "psnr": float(np.mean([v["psnr"] for v in per_view.values()])),
            "ssim": float(np.mean([v["ssim"] for v in per_view.values()])),
            "views": per_view,
        }
    write_json(ws.root / "eval.json", result)
    g = result["geometry"]
    rt.info(
        f"eval {stage}: chamfer {g['chamfer_cm']:.3f} cm, p2s {g['p2s_cm']:.3f} cm, "
        f"NC {g['normal_consistency']:.4f}, front PSNR {result['front']['psnr']:.2f} dB"
    )
    return result
