"""``humanref prep PHOTO WS``: everything later stages need from the photo, in ``ws/prep/`` (design.md §3).

The photo is checked and the person found *before* the workspace is touched, so a bad photo (exit 2)
never wipes an earlier good prep. Then, inside the stage record: silhouette (mask file > alpha > SAM >
mediapipe), the square crop, the anny body fit, normal maps, parsing and regions, the prompt and a
contact sheet. Full-quality models are used when present and enabled; the manifest says which ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from humanref_cli.configs.prep import PrepConfig
from humanref_cli.errors import UsageError
from humanref_cli.io import save_npy, write_bytes, write_json, write_png, write_text
from humanref_cli.workspace import Workspace

OUTPUTS = (
    "image.png", "mask.png", "keypoints.json", "body.json", "body.ply", "normal_front.png",
    "normal_front.npy", "normal_back.png", "normal_back.npy", "parsing.png", "regions.json", "prompt.txt",
    "camera.json", "report.png",
)  # fmt: skip
OPTIONAL_ROLES = {
    "sam": "use_sam",
    "marigold_normals": "use_marigold",
    "segformer_parser": "use_segformer",
    "blip": "use_blip",
}


@dataclass(frozen=True)
class PrepKey:
    """What determines prep's result besides its input files: the config and the command's options."""

    config: PrepConfig
    person: int | None
    allow_partial: bool
    prompt: str | None


def available_models(cfg: PrepConfig, models_dir: Path | None, prompt: str | None) -> dict[str, Path]:
    """role -> directory of the full-quality models that are enabled and present on this machine."""
    from humanref_cli.models.store import find_model

    found = {}
    for role, flag in OPTIONAL_ROLES.items():
        if not getattr(cfg, flag) or (role == "blip" and prompt):
            continue
        path = find_model(role, models_dir)
        if path is not None:
            found[role] = path
    return found


def run_prep(
    ws: Workspace,
    image: Path,
    cfg: PrepConfig,
    rt,
    *,
    force: bool = False,
    mask: Path | None = None,
    person: int | None = None,
    allow_partial: bool = False,
    prompt: str | None = None,
    models_dir: Path | None = None,
) -> dict[str, Any]:
    from humanref_cli.models.store import model_id
    from humanref_cli.perception.bodyfit import ANNY_ID
    from humanref_cli.perception.person import MEDIAPIPE_ID

    image = Path(image)
    if not image.is_file():
        raise UsageError(f"image not found: {image}", hint="check the path")
    if mask is not None and not Path(mask).is_file():
        raise UsageError(f"mask not found: {mask}", hint="check the --mask path")
    found = available_models(cfg, models_dir, prompt)
    models = {"keypoints": MEDIAPIPE_ID, "body": ANNY_ID, **{role: model_id(role) for role in found}}
    inputs = [image] + ([Path(mask)] if mask is not None else [])
    key = ws.stage_key("prep", PrepKey(cfg, person, allow_partial, prompt), inputs, models)
    if not force and ws.is_fresh("prep", key):
        rt.info("prep: up to date")
        return ws.summary("prep")

    photo = _load_and_find_person(image, cfg, rt, person, allow_partial)
    with ws.stage(
        "prep", key=key, cfg=cfg, inputs=inputs, models=models, steps=None, rt=rt, force=force
    ) as run:
        result = _prepare(run, photo, cfg, rt, user_mask=mask, user_prompt=prompt, found=found)
    return {"workspace": str(ws.root), "prep_dir": str(ws.stage_dir("prep")), **result}


def _load_and_find_person(image: Path, cfg: PrepConfig, rt, person: int | None, allow_partial: bool):
    """Decode and check the photo, detect people, pick one (all UsageErrors, exit 2)."""
    from humanref_cli.perception.image import load_image
    from humanref_cli.perception.person import detect_people, select_person

    loaded = load_image(image, max_pixels=cfg.max_pixels)
    rgb, alpha, scale = work_image(loaded, cfg.work_max_side)
    rt.info(
        f"prep: {image.name} {loaded.size[1]}x{loaded.size[0]} ({loaded.format or 'image'}, {loaded.mode})"
    )
    people = detect_people(rgb, cfg.max_people)
    chosen, warnings = select_person(
        people,
        image.name,
        rgb.shape[:2],
        index=person,
        min_height_px=cfg.min_person_px / scale,
        allow_partial=allow_partial,
        min_visibility=cfg.min_visibility,
    )
    for w in warnings:
        rt.warn(w)
    index = person if person is not None else 0
    return Photo(loaded, rgb, alpha, scale, chosen, index, len(people))


@dataclass(frozen=True)
class Photo:
    """The checked photo: ``rgb``/``alpha`` at working size (``scale`` photo pixels per working pixel),
    the chosen person (working pixels), its index and how many people were found."""

    loaded: Any
    rgb: np.ndarray
    alpha: np.ndarray | None
    scale: float
    person: Any
    index: int
    people: int


def work_image(loaded, max_side: int) -> tuple[np.ndarray, np.ndarray | None, float]:
    """The photo (and alpha) downscaled with area filtering when its longer side exceeds ``max_side``."""
    import cv2

    h, w = loaded.size
    if max(h, w) <= max_side:
        return loaded.rgb, loaded.alpha, 1.0
    scale = max(h, w) / max_side
    size = (max(round(w / scale), 1), max(round(h / scale), 1))
    rgb = cv2.resize(loaded.rgb, size, interpolation=cv2.INTER_AREA)
    alpha = None if loaded.alpha is None else cv2.resize(loaded.alpha, size, interpolation=cv2.INTER_AREA)
    return rgb, alpha, scale


def _silhouette(
    photo: Photo, cfg: PrepConfig, rt, user_mask: Path | None, found: dict
) -> tuple[np.ndarray, str]:
    """Working-size bool silhouette (largest component) and its source name."""
    import cv2

    from humanref_cli.perception import silhouette as sil

    person = photo.person
    mp_mask = person.mask > 0.5 if person.mask is not None else None
    if user_mask is not None:
        m = sil.mask_from_file(Path(user_mask), photo.loaded.size, cfg.max_pixels)
        if m.shape != photo.rgb.shape[:2]:
            m = cv2.resize(m.astype(np.uint8), photo.rgb.shape[1::-1], interpolation=cv2.INTER_NEAREST) > 0
        chosen, source = m, "mask_file"
    elif photo.alpha is not None:
        chosen, source = sil.mask_from_alpha(photo.alpha), "alpha"
    else:
        chosen, source = mp_mask, "mediapipe"
        if "sam" in found:
            chosen, source = _sam_silhouette(photo, cfg, rt, found["sam"], mp_mask)
    if chosen is None or not chosen.any():
        raise UsageError(
            f"the silhouette of the person in {photo.loaded.path.name} is empty ({source})",
            hint="pass a mask with --mask (white = person)",
        )
    return sil.largest_component(chosen), source


def _sam_silhouette(photo: Photo, cfg: PrepConfig, rt, sam_dir: Path, mp_mask: np.ndarray | None):
    """SAM prompted with the person box and confident in-frame keypoints; mediapipe's mask when SAM
    disagrees with it (IoU below ``sam_min_agreement``)."""
    from humanref_cli.perception.person import in_frame
    from humanref_cli.perception.sam import load_sam, sam_mask
    from humanref_cli.perception.silhouette import mask_iou

    person = photo.person
    keep = (person.visibility >= 0.9) & in_frame(person.keypoints, photo.rgb.shape[:2])
    sam = load_sam(sam_dir, rt.device)
    m, score = sam_mask(sam, photo.rgb, person.box, person.keypoints[keep])
    agreement = mask_iou(m, mp_mask) if mp_mask is not None else 1.0
    if agreement < cfg.sam_min_agreement:
        rt.warn(
            f"SAM's mask disagrees with mediapipe's (IoU {agreement:.2f}, score {score:.2f}); "
            "using mediapipe's"
        )
        return mp_mask, "mediapipe (sam rejected)"
    return m, "sam"


def _prepare(run, photo: Photo, cfg: PrepConfig, rt, *, user_mask, user_prompt, found) -> dict[str, Any]:
    """The stage body: write every output of ``ws/prep`` and record the notes."""
    from humanref_cli.perception.bodyfit import FitSettings, fit_body
    from humanref_cli.perception.crop import crop_array, square_crop
    from humanref_cli.perception.silhouette import bbox, finish_crop_mask

    out = run.dir
    loaded = photo.loaded
    write_bytes(out / f"input.{loaded.extension}", loaded.path.read_bytes())
    run.add_output(out / f"input.{loaded.extension}")

    silhouette, mask_source = _silhouette(photo, cfg, rt, user_mask, found)
    crop = square_crop(bbox(silhouette), cfg.res, cfg.box_scale, photo.scale)
    rgb = crop_array(photo.rgb, crop, fill=255)
    erode = cfg.erode_px if mask_source == "sam" else 0
    mask = finish_crop_mask(
        crop_array(silhouette.astype(np.float32), crop, out_size=2 * cfg.res), cfg.res, erode
    )
    rgb = np.where(mask[..., None], rgb, 255).astype(np.uint8)  # composited on white, as the released crop
    keypoints = crop.to_crop(photo.person.keypoints)
    visibility = photo.person.visibility
    rt.info(f"prep: silhouette from {mask_source}; crop {crop.side}px -> {cfg.res}px")

    from humanref_cli.geometry.anny_body import load_anny

    settings = FitSettings(
        steps_keypoints=cfg.fit_steps_keypoints,
        steps_full=cfg.fit_steps_full,
        w_sil=cfg.fit_w_sil,
        w_pose=cfg.fit_w_pose,
        w_shape=cfg.fit_w_shape,
        w_dir=cfg.fit_w_dir,
        w_upright=cfg.fit_w_upright,
        detector_offsets=cfg.fit_detector_offsets,
        min_visibility=cfg.min_visibility,
        seed=rt.seed,
    )
    total = settings.steps_keypoints + settings.steps_full
    with rt.progress(total, "prep: body fit") as bar:
        body = load_anny()
        fit = fit_body(
            body,
            keypoints,
            visibility,
            mask,
            settings,
            world=photo.person.world,
            on_step=lambda k, s: bar.update(min(k, total), **s),
        )
    rt.info(f"prep: body fit keypoint residual {fit.keypoint_error_px:.1f}px, silhouette IoU {fit.iou:.3f}")
    fit_ok = fit.iou >= cfg.fit_min_iou
    if not fit_ok:
        rt.warn(
            f"THE BODY FIT IS POOR: silhouette IoU {fit.iou:.2f} < {cfg.fit_min_iou} "
            f"(keypoint residual {fit.keypoint_error_px:.1f}px). Check {out / 'report.png'}; "
            "a cleaner full-body photo or --mask may help"
        )

    front, back, normals_source = _normals(fit, mask, rgb, rt, found)
    groups, regions, parsing_source = _parsing(fit, body.face_parts.cpu().numpy(), mask, rgb, rt, found)
    prompt = _prompt(rgb, mask, user_prompt, rt, found)
    ids = run.record["models"]
    used = {
        "keypoints": ids["keypoints"],
        "body": ids["body"],
        "silhouette": ids["sam"] if mask_source == "sam" else mask_source,
        "normal_front": ids["marigold_normals"] if normals_source == "marigold" else ids["body"],
        "parsing": ids["segformer_parser"] if parsing_source == "segformer" else ids["body"],
        "prompt": ids["blip"] if prompt.source == "blip" else prompt.source,
    }

    _write_outputs(run, photo, crop, rgb, mask, keypoints, fit, front, back, groups, regions, prompt)
    notes = {
        "mask_source": mask_source,
        "mask_eroded_px": erode,
        "people_found": photo.people,
        "person": photo.index,
        "keypoint_residual_px": round(fit.keypoint_error_px, 3),
        "silhouette_iou": round(fit.iou, 4),
        "fit_ok": fit_ok,
        "normals_source": normals_source,
        "parsing_source": parsing_source,
        "prompt_source": prompt.source,
        "prompt": prompt.text,
        "models_used": used,
    }
    _write_report(run, rgb, mask, keypoints, visibility, fit, front, back, groups, regions, notes, cfg)
    run.note(**notes)
    return notes


def _normals(fit, mask, rgb, rt, found) -> tuple[np.ndarray, np.ndarray, str]:
    from humanref_cli.perception.normals import body_normal_maps, marigold_front_normals

    front, back = body_normal_maps(fit.vertices, fit.faces, mask)
    if "marigold_normals" not in found:
        return front, back, "body"
    rt.info("prep: front normals from Marigold")
    return marigold_front_normals(found["marigold_normals"], rgb, mask, rt.device), back, "marigold"


def _parsing(fit, face_parts, mask, rgb, rt, found) -> tuple[np.ndarray, dict, str]:
    """Body groups ``(H, W)`` uint8, the regions dict and the source name."""
    from humanref_cli.perception import parsing as P
    from humanref_cli.render.camera import camera_to_world
    from humanref_cli.render.raster import MeshRasterizer

    if "segformer_parser" in found:
        from humanref_cli.perception.segformer import load_parser, parse_lip

        rt.info("prep: parsing with SegFormer")
        model, processor = load_parser(found["segformer_parser"], rt.device)
        lip = np.where(mask, parse_lip(model, processor, rgb), 0).astype(np.uint8)
        return P.groups_from_lip(lip), P.regions_from_lip(lip, mask, "segformer"), "segformer"
    h, w = mask.shape
    with MeshRasterizer(w, h) as raster:
        labels = raster.labels(fit.vertices, fit.faces, face_parts, camera_to_world(0.0, 0.0, 1.0))
    groups = P.refine_legs_by_colour(P.fill_silhouette(labels.astype(np.uint8), mask), rgb)
    return groups, P.regions_from_lip(P.lip_from_groups(groups), mask, "body"), "body"


def _prompt(rgb, mask, user_prompt, rt, found):
    from humanref_cli.perception.prompt import blip_caption, make_prompt

    caption = None
    if not user_prompt and "blip" in found:
        caption = blip_caption(found["blip"], rgb, rt.device)
        rt.info(f"prep: BLIP caption: {caption!r}")
    return make_prompt(user_prompt, caption)


def _write_outputs(run, photo, crop, rgb, mask, keypoints, fit, front, back, groups, regions, prompt) -> None:
    import torch
    import trimesh

    from humanref_cli.geometry.anny_body import anny_to_world_rotation
    from humanref_cli.io import atomic_path
    from humanref_cli.perception.bodyfit import ANNY_ID
    from humanref_cli.perception.normals import to_png
    from humanref_cli.perception.person import MEDIAPIPE_ID

    out = run.dir
    m8 = mask.astype(np.uint8) * 255
    write_png(out / "image.png", np.concatenate([rgb, m8[..., None]], axis=-1))
    write_png(out / "mask.png", m8)
    person = photo.person
    box = crop.to_crop(np.array(person.box, np.float64).reshape(2, 2)).reshape(-1)
    write_json(
        out / "keypoints.json",
        {
            "source": MEDIAPIPE_ID,
            "person": photo.index,
            "people_found": photo.people,
            "pixel_convention": "crop pixels (u, v), pixel centres at i + 0.5",
            "landmarks": [
                {"u": float(u), "v": float(v), "visibility": float(vis), "depth_px": float(d / crop.scale)}
                for (u, v), vis, d in zip(keypoints, person.visibility, person.depth, strict=True)
            ],
            "world_m": None if person.world is None else np.round(person.world, 5).tolist(),
            "world_convention": "mediapipe world landmarks: metres, hip-centred, x right, y down, z away",
            "box": [float(b) for b in box],
            "fitted": [[float(u), float(v)] for u, v in fit.landmarks_px],
        },
    )
    rot = anny_to_world_rotation(torch.tensor(fit.params.global_rotation, dtype=torch.float64)).tolist()
    write_json(
        out / "body.json",
        {
            "model": ANNY_ID,
            "params": fit.params.to_dict(),
            "anny_to_world": {
                "formula": "x_world = scale * rotation @ x_anny + translation",
                "rotation": rot,
                "scale": fit.params.scale,
                "translation": fit.params.translation,
            },
            "fit": {
                "keypoint_error_px": fit.keypoint_error_px,
                "silhouette_iou": fit.iou,
                "losses": fit.losses,
                "landmarks_used": [int(i) for i in np.nonzero(fit.landmarks_used)[0]],
            },
        },
    )
    with atomic_path(out / "body.ply") as tmp:
        tmp.write_bytes(trimesh.Trimesh(fit.vertices, fit.faces, process=False).export(file_type="ply"))
    for side, n in (("front", front), ("back", back)):
        write_png(out / f"normal_{side}.png", to_png(n))
        save_npy(out / f"normal_{side}.npy", n.astype(np.float32))
    write_png(out / "parsing.png", groups.astype(np.uint8))
    write_json(out / "regions.json", regions)
    write_text(out / "prompt.txt", prompt.to_text())
    write_json(out / "camera.json", crop.camera_json(photo.loaded.size, photo.loaded.exif_rotated))
    run.add_output(*(out / name for name in OUTPUTS if name != "report.png"))


def _write_report(
    run, rgb, mask, keypoints, visibility, fit, front, back, groups, regions, notes, cfg
) -> None:
    from humanref_cli.perception.normals import to_png
    from humanref_cli.perception.parsing import group_colours
    from humanref_cli.perception.report import body_overlay, contact_sheet

    caption = (
        f"mask: {notes['mask_source']}  keypoint residual {notes['keypoint_residual_px']:.1f}px  "
        f"silhouette IoU {notes['silhouette_iou']:.3f}{'' if notes['fit_ok'] else ' (POOR FIT)'}  "
        f"normals: {notes['normals_source']}  parsing: {notes['parsing_source']}  prompt: {notes['prompt']}"
    )
    sheet = contact_sheet(
        rgb,
        mask,
        keypoints,
        visibility,
        fit.landmarks_px,
        body_overlay(rgb, fit.vertices, fit.faces),
        to_png(front),
        to_png(back),
        group_colours(groups),
        regions,
        caption,
        cfg.min_visibility,
    )
    write_png(run.dir / "report.png", sheet)
    run.add_output(run.dir / "report.png")
