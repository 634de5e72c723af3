"""Synthetic subjects: a random clothed-looking anny body, its front "photo" and exact ground truth.

``make_subject(out_dir, seed)`` writes::

    image.png            RGB photo on a plain light background (front view, lambert + ambient)
    image_rgba.png       the same photo with alpha = coverage
    gt/mesh.ply          coloured mesh, world frame
    gt/mask.png          uint8 {0, 255}, one sample per pixel centre
    gt/normal_front.png  world normals as (n + 1) / 2 · 255, 0 outside the mask
    gt/normal_back.png   back-camera normals flipped horizontally (method.md §2.3): its silhouette
                         is the front one
    gt/parsing.png       uint8 labels 0 background, 1 head, 2 upper, 3 lower, 4 feet
    gt/keypoints.json    MediaPipe-33 landmarks: pixel u, v, visibility, world xyz
    gt/camera.json       camera, anny->world transform, body parameters, outfit, light, height in metres
    gt/views/az_XXX.png  RGBA renders every 45° of azimuth

Everything derives from ``numpy.random.Generator(seed)``; the GL renders are bit-stable on one
machine (checked by the tests), so two runs with the same seed write identical bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from humanref_cli.geometry.anny_body import (
    PHENOTYPES,
    AnnyBody,
    BodyOutput,
    fit_to_crop,
    forward_params,
    load_anny,
)
from humanref_cli.io import write_bytes, write_json, write_png
from humanref_cli.render.camera import camera_to_world, world_to_pixel
from humanref_cli.render.raster import MeshRasterizer
from humanref_cli.synth.clothing import face_parsing, sample_outfit, vertex_albedo, vertex_materials
from humanref_cli.synth.pose import sample_body

BACKGROUNDS = ((0.94, 0.94, 0.92), (0.90, 0.92, 0.95), (0.95, 0.92, 0.88), (0.92, 0.92, 0.92))
CAMERA = {"azimuth": 0.0, "elevation": 0.0, "distance": 1.0, "radius": 1.0}
VIEW_AZIMUTHS = tuple(range(0, 360, 45))
SUPERSAMPLE = 2
# Where the photo's one light comes from, as (right, up, towards the camera) in the camera's axes; None is
# the renderer's default (from the camera, a little above and to its left). ``left``/``right`` light the
# person from 45 degrees to the camera's left/right and a little above, as a window beside them does.
LIGHTS = {"front": None, "left": (-0.7, 0.3, 0.65), "right": (0.7, 0.3, 0.65)}
MEDIAPIPE_NAMES = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye", "right_eye_outer",
    "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_pinky", "right_pinky", "left_index", "right_index",
    "left_thumb", "right_thumb", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
    "right_ankle", "left_heel", "right_heel", "left_foot_index", "right_foot_index",
)  # fmt: skip


def _to_u8(img: np.ndarray) -> np.ndarray:
    return np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)


def _normal_png(normals: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.where(mask[..., None], _to_u8((normals + 1.0) / 2.0), 0).astype(np.uint8)


def _height_m(body: AnnyBody, phenotype: dict[str, float]) -> float:
    """Standing height of the unposed body (top of head to sole), metres."""
    pheno = torch.tensor([[phenotype[k] for k in PHENOTYPES]], dtype=body.dtype, device=body.device)
    with torch.no_grad():
        z = body.model(phenotype_kwargs=pheno)["vertices"][0, :, 2]
    return round(float(z.max() - z.min()), 4)


def _keypoints(out: BodyOutput, ids: np.ndarray, depth: np.ndarray, c2w: torch.Tensor, res: int, s: float):
    """MediaPipe-33 entries ``{name, u, v, visibility, xyz}`` (None where unmappable).

    Visibility is 1 when the landmark's pixel is on the body and the visible surface there is no more
    than 2 cm (surface landmarks) or 15 cm (joints inside the body) in front of it, scaled to the body.
    """
    uv, d = world_to_pixel(out.landmarks.detach().double().cpu(), c2w.double(), res, res)
    surface = {0, 1, 3, 4, 6, 7, 8, 9, 10, 29, 30, 31, 32}
    entries = []
    for k, name in enumerate(MEDIAPIPE_NAMES):
        if not bool(out.landmark_valid[k]):
            entries.append(None)
            continue
        u, v = (float(a) for a in uv[k])
        i, j = int(np.floor(u)), int(np.floor(v))
        visible = 0.0
        if 0 <= i < res and 0 <= j < res and ids[j, i] > 0:
            slack = (0.02 if k in surface else 0.15) * s
            visible = float(depth[j, i] >= float(d[k]) - slack)
        xyz = [round(float(a), 6) for a in out.landmarks[k].detach().cpu()]
        entries.append({"name": name, "u": round(u, 3), "v": round(v, 3), "visibility": visible, "xyz": xyz})
    return entries


def _mesh_ply(vertices: np.ndarray, faces: np.ndarray, albedo: np.ndarray) -> bytes:
    import trimesh

    colours = np.concatenate([_to_u8(albedo), np.full((len(albedo), 1), 255, np.uint8)], 1)
    mesh = trimesh.Trimesh(vertices, faces, vertex_colors=colours, process=False)
    return mesh.export(file_type="ply", encoding="binary")


def make_subject(
    out_dir: Path,
    seed: int,
    res: int = 512,
    body: AnnyBody | None = None,
    on_first_build: Callable[[str], None] | None = None,
    pose: str | None = None,
    light: str = "front",
) -> dict:
    """Write a synthetic subject under ``out_dir`` (layout in the module docstring) and return a summary.
    ``pose`` forces a pose style (``synth.pose``); the seed still decides the rest (the same phenotype
    as without it, and the same outfit and background unless the seed's own style is ``walking``).
    ``light`` names where the photo is lit from (:data:`LIGHTS`); the ground-truth views keep the default.

    ``body`` reuses an already loaded anny (``load_anny()``); by default one is built (~1-3 s, or ~3
    minutes the very first time, which ``on_first_build`` is told about).
    """
    if light not in LIGHTS:
        raise ValueError(f"unknown light {light!r}: one of {', '.join(LIGHTS)}")
    out_dir = Path(out_dir)
    rng = np.random.Generator(np.random.PCG64(seed))
    body = body if body is not None else load_anny(on_first_build=on_first_build)
    params, style = sample_body(rng, pose)
    outfit = sample_outfit(rng)
    background = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]

    with torch.no_grad():
        s, t = fit_to_crop(forward_params(body, params).vertices)
        params.scale = round(s, 6)
        params.translation = [round(float(a), 6) for a in t]
        out = forward_params(body, params)
    verts = out.vertices.double().cpu().numpy()
    faces = out.faces.cpu().numpy()
    materials, rest = vertex_materials(body, params.phenotype, outfit)
    albedo = vertex_albedo(materials, rest, outfit)
    parsing_faces = face_parsing(materials, faces)
    c2w = camera_to_world(CAMERA["azimuth"], CAMERA["elevation"], CAMERA["distance"])
    light_dir = None if LIGHTS[light] is None else c2w[:3, :3].double().numpy() @ np.asarray(LIGHTS[light])
    gt = out_dir / "gt"

    with MeshRasterizer(res, res) as exact, MeshRasterizer(res, res, supersample=SUPERSAMPLE) as smooth:
        rgb, alpha = smooth.shaded(verts, faces, albedo, c2w, background=background, light_dir=light_dir)
        premult = rgb - (1.0 - alpha[..., None]) * np.asarray(background, np.float32)
        straight = np.where(alpha[..., None] > 0, premult / np.maximum(alpha[..., None], 1e-6), 0.0)
        write_png(out_dir / "image.png", _to_u8(rgb))
        write_png(out_dir / "image_rgba.png", _to_u8(np.concatenate([straight, alpha[..., None]], -1)))

        ids, depth = exact.face_ids(verts, faces, c2w)
        mask = ids > 0
        write_png(gt / "mask.png", (mask * 255).astype(np.uint8))
        write_png(gt / "normal_front.png", _normal_png(exact.normals(verts, faces, c2w), mask))
        back = exact.normals(verts, faces, camera_to_world(180.0, CAMERA["elevation"], CAMERA["distance"]))
        write_png(gt / "normal_back.png", _normal_png(back[:, ::-1], np.any(back[:, ::-1] != 0, -1)))
        labels = np.concatenate([[0], parsing_faces])[ids]
        write_png(gt / "parsing.png", labels.astype(np.uint8))

        for az in VIEW_AZIMUTHS:
            cam = camera_to_world(float(az), CAMERA["elevation"], CAMERA["distance"])
            view, view_alpha = smooth.shaded(verts, faces, albedo, cam, background=(0.0, 0.0, 0.0))
            view = np.where(view_alpha[..., None] > 0, view / np.maximum(view_alpha[..., None], 1e-6), 0.0)
            write_png(
                gt / "views" / f"az_{az:03d}.png", _to_u8(np.concatenate([view, view_alpha[..., None]], -1))
            )

    keypoints = _keypoints(out, ids, depth, c2w, res, params.scale)
    write_json(gt / "keypoints.json", {"format": "mediapipe33", "size": [res, res], "keypoints": keypoints})
    height = _height_m(body, params.phenotype)
    camera = {
        **CAMERA,
        "c2w": c2w.double().numpy().round(8).tolist(),
        "size": [res, res],
        "anny_to_world": {"rotate_z_deg": 90.0, "scale": params.scale, "translation": params.translation},
        "body": params.to_dict(),
        "pose_style": style,
        "light": light,
        "outfit": outfit.to_dict(),
        "height_m": height,
        "seed": seed,
    }
    write_json(gt / "camera.json", camera)
    write_bytes(gt / "mesh.ply", _mesh_ply(verts, faces, albedo))
    return {
        "out_dir": str(out_dir),
        "seed": seed,
        "res": res,
        "pose_style": style,
        "height_m": height,
        "mask_fraction": round(float(mask.mean()), 4),
        "visible_keypoints": int(sum(1 for k in keypoints if k and k["visibility"] > 0)),
    }
