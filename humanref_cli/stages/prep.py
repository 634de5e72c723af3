"""``humanref prep PHOTO WS``: everything later stages need from the photo, in ``ws/prep/`` (design.md §3).

The photo is checked and the person found *before* the workspace is touched, so a bad photo (exit 2)
never wipes an earlier good prep. Then, inside the stage record: silhouette (mask file > alpha > SAM >
mediapipe), the square crop, the anny body fit, normal maps, parsing and regions, the prompt and a
contact sheet. Full-quality models are used when present and enabled; the manifest says which ran.
The per-product helpers live in ``prep_products`` and the file writers in ``prep_outputs``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from humanref_cli.configs.prep import PrepConfig
from humanref_cli.errors import UsageError
from humanref_cli.io import write_bytes
from humanref_cli.stages.prep_outputs import write_outputs, write_report
from humanref_cli.stages.prep_products import body_parsing, normal_maps, photo_prompt
from humanref_cli.workspace import Workspace

OUTPUTS = (
    "image.png", "mask.png", "keypoints.json", "body.json", "body.ply", "normal_front.png",
    "normal_front.npy", "normal_back.png", "normal_back.npy", "parsing.png", "regions.json", "prompt.txt",
    "camera.json", "report.png",
)  # fmt: skip
OPTIONAL_ROLES = {
    "pose_heavy": "use_pose_heavy",
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


def pose_model(cfg: PrepConfig, found: dict[str, Path], rt) -> str:
    """mediapipe's landmark model for this prep: ``heavy`` when asked for (``use_pose_heavy``), pulled
    and put where mediapipe loads it (``perception/pose_heavy.py``), else the bundled ``full`` (with a
    warning when asked for; ``found`` loses the role then, so the manifest does not claim it)."""
    if "pose_heavy" not in found:
        if cfg.use_pose_heavy:
            rt.warn(
                "prep: use_pose_heavy is set but pose_heavy is not pulled (humanref models pull "
                "pose_heavy); using the bundled full model"
            )
        return "full"
    from humanref_cli.perception.pose_heavy import FILE_NAME, install, locked_sha256

    try:
        install(found["pose_heavy"] / FILE_NAME, locked_sha256())
    except (OSError, ValueError) as exc:
        fix = "models pull pose_heavy --force" if isinstance(exc, ValueError) else "a writable install"
        rt.warn(
            f"prep: the heavy pose model could not be put into mediapipe's package ({exc}); "
            f"using the bundled full model (fix: {fix})"
        )
        del found["pose_heavy"]
        return "full"
    return "heavy"


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
    from humanref_cli.perception.bodyfit import ANNY_ID, FIT_ID
    from humanref_cli.perception.landmark_offsets import offsets_id
    from humanref_cli.perception.person import detector_id

    image = Path(image)
    if image.is_dir():
        raise UsageError(
            f"{image} is a folder, not a photo",
            hint="pass one photo; for a folder, loop over its photos in the shell",
        )
    if not image.is_file():
        raise UsageError(f"image not found: {image}", hint="check the path")
    if mask is not None and not Path(mask).is_file():
        what = "is a folder, not a mask image" if Path(mask).is_dir() else "not found"
        raise UsageError(
            f"--mask {mask} {what}", hint="pass a mask with the same size as the photo (white = person)"
        )
    found = available_models(cfg, models_dir, prompt)
    pose = pose_model(cfg, found, rt)
    models = {
        "keypoints": detector_id(pose),
        "body": ANNY_ID,
        "body_fit": FIT_ID,
        **{role: model_id(role) for role in found},
    }
    if cfg.fit_detector_offsets or cfg.fit_depth_calibration:
        models["landmark_offsets"] = offsets_id(pose)
    inputs = [image] + ([Path(mask)] if mask is not None else [])
    key = ws.stage_key("prep", PrepKey(cfg, person, allow_partial, prompt), inputs, models)
    if not force and ws.is_fresh("prep", key):
        rt.info("prep: up to date")
        return ws.summary("prep")

    photo = _load_and_find_person(image, cfg, rt, person, allow_partial, pose)
    with ws.stage(
        "prep", key=key, cfg=cfg, inputs=inputs, models=models, steps=None, rt=rt, force=force
    ) as run:
        result = _prepare(run, photo, cfg, rt, user_mask=mask, user_prompt=prompt, found=found)
    return {"workspace": str(ws.root), "prep_dir": str(ws.stage_dir("prep")), **result}


def _load_and_find_person(
    image: Path, cfg: PrepConfig, rt, person: int | None, allow_partial: bool, pose: str = "full"
):
    """Decode and check the photo, detect people, pick one (all UsageErrors, exit 2)."""
    from humanref_cli.perception.image import load_image
    from humanref_cli.perception.person import detect_people, select_person

    loaded = load_image(image, max_pixels=cfg.max_pixels)
    rgb, alpha, scale = work_image(loaded, cfg.work_max_side)
    rt.info(
        f"prep: {image.name} {loaded.size[1]}x{loaded.size[0]} ({loaded.format or 'image'}, {loaded.mode})"
    )
    people = detect_people(rgb, cfg.max_people, pose)
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
    return Photo(loaded, rgb, alpha, scale, chosen, index, len(people), pose)


@dataclass(frozen=True)
class Photo:
    """The checked photo: ``rgb``/``alpha`` at working size (``scale`` photo pixels per working pixel),
    the chosen person (working pixels), its index, how many people were found and by which model."""

    loaded: Any
    rgb: np.ndarray
    alpha: np.ndarray | None
    scale: float
    person: Any
    index: int
    people: int
    pose: str = "full"  # mediapipe's landmark model (``person.POSE_MODELS``)


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

    if user_mask is not None:
        m = sil.mask_from_file(Path(user_mask), photo.loaded.size, cfg.max_pixels)
        if m.shape != photo.rgb.shape[:2]:
            m = cv2.resize(m.astype(np.uint8), photo.rgb.shape[1::-1], interpolation=cv2.INTER_NEAREST) > 0
        chosen, source = m, "mask_file"
    elif photo.alpha is not None:
        chosen, source = sil.mask_from_alpha(photo.alpha), "alpha"
    else:
        mp_mask = _mediapipe_mask(photo, cfg)
        chosen, source = mp_mask, "mediapipe"
        if "sam" in found:
            chosen, source = _sam_silhouette(photo, cfg, rt, found["sam"], mp_mask)
    if chosen is None or not chosen.any():
        raise UsageError(
            f"the silhouette of the person in {photo.loaded.path.name} is empty ({source})",
            hint="pass a mask with --mask (white = person)",
        )
    return sil.largest_component(chosen), source


def _mediapipe_mask(photo: Photo, cfg: PrepConfig) -> np.ndarray | None:
    """mediapipe's soft mask -> bool, snapped to the photo's edges by the guided filter when enabled."""
    from humanref_cli.perception.guided_filter import refine_mask

    soft = photo.person.mask
    if soft is None:
        return None
    if not cfg.mask_refine:
        return soft > 0.5
    return refine_mask(photo.rgb, soft, photo.person.box, cfg.mask_refine_radius, cfg.mask_refine_eps)


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
    out = run.dir
    loaded = photo.loaded
    write_bytes(out / f"input.{loaded.extension}", loaded.path.read_bytes())
    run.add_output(out / f"input.{loaded.extension}")

    c = _crop_and_mask(photo, cfg, rt, user_mask, found)
    fit, face_parts, fit_ok = _fit_body(photo, c, cfg, rt, out / "report.png")
    front, back, normals_source = normal_maps(fit, c.mask, c.rgb, rt, found)
    groups, regions, parsing_source = body_parsing(fit, face_parts, c.mask, c.rgb, rt, found)
    prompt = photo_prompt(c.rgb, c.mask, user_prompt, rt, found)
    used = _models_used(
        run.record["models"],
        silhouette=c.source,
        normals=normals_source,
        parsing=parsing_source,
        prompt=prompt.source,
    )

    write_outputs(run, photo, c.crop, c.rgb, c.mask, c.keypoints, fit, front, back, groups, regions, prompt)
    run.add_output(*(out / name for name in OUTPUTS if name != "report.png"))
    notes = {
        "mask_source": c.source,
        "mask_eroded_px": c.erode_px,
        "mask_edge_refined": c.edge_refined,
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
    visibility = photo.person.visibility
    write_report(run, c.rgb, c.mask, c.keypoints, visibility, fit, front, back, groups, regions, notes, cfg)
    run.add_output(out / "report.png")
    run.note(**notes)
    return notes


@dataclass(frozen=True)
class Cropped:
    """The person's square crop: ``rgb`` ``(res, res, 3)`` uint8 composited on white, bool ``mask``
    ``(res, res)``, ``keypoints`` ``(33, 2)`` in crop pixels, the silhouette's source, its erosion and
    whether the guided filter snapped its edges (decision 4m)."""

    crop: Any
    rgb: np.ndarray
    mask: np.ndarray
    keypoints: np.ndarray
    source: str
    erode_px: int
    edge_refined: bool


def _crop_and_mask(photo: Photo, cfg: PrepConfig, rt, user_mask: Path | None, found: dict) -> Cropped:
    """Silhouette, square crop around it, the crop's mask (finished at 2x then downsampled) and keypoints."""
    from humanref_cli.perception.crop import crop_array, square_crop
    from humanref_cli.perception.silhouette import bbox, finish_crop_mask

    silhouette, mask_source = _silhouette(photo, cfg, rt, user_mask, found)
    crop = square_crop(bbox(silhouette), cfg.res, cfg.box_scale, photo.scale)
    rgb = crop_array(photo.rgb, crop, fill=255)
    erode = cfg.erode_px if mask_source == "sam" else 0
    mask = finish_crop_mask(
        crop_array(silhouette.astype(np.float32), crop, out_size=2 * cfg.res), cfg.res, erode
    )
    rgb = np.where(mask[..., None], rgb, 255).astype(np.uint8)  # composited on white, as the released crop
    keypoints = crop.to_crop(photo.person.keypoints)
    refined = mask_source.startswith("mediapipe") and cfg.mask_refine
    note = " (edges snapped by the guided filter)" if refined else ""
    rt.info(f"prep: silhouette from {mask_source}{note}; crop {crop.side}px -> {cfg.res}px")
    return Cropped(crop, rgb, mask, keypoints, mask_source, erode, refined)


def _fit_body(photo: Photo, c: Cropped, cfg: PrepConfig, rt, report: Path):
    """Fit anny to the crop's keypoints and mask: ``(fit, face_parts, fit_ok)``, ``face_parts`` the
    body's per-face part labels; warns (pointing at ``report``) when the silhouette IoU is poor."""
    from humanref_cli.geometry.anny_body import load_anny
    from humanref_cli.perception.bodyfit import FitSettings, fit_body, fit_evaluations
    from humanref_cli.perception.shading_cue import describe, limb_shading, load_shading_calibration

    settings = FitSettings.from_prep(cfg, rt.seed, photo.pose)
    shading = None
    if cfg.fit_w_shade > 0:
        shading = limb_shading(c.rgb, c.mask, c.keypoints, photo.person.visibility)
        rt.info(f"prep: legs' shading: {describe(shading, load_shading_calibration(detector=photo.pose))}")
    total = fit_evaluations(settings, photo.person.world)
    with rt.progress(total, "prep: body fit") as bar:
        body = load_anny(on_first_build=rt.info)
        fit = fit_body(
            body,
            c.keypoints,
            photo.person.visibility,
            c.mask,
            settings,
            world=photo.person.world,
            on_step=lambda k, s: bar.update(min(k, total), **s),
            limb_shading=shading,
        )
    rt.info(f"prep: body fit keypoint residual {fit.keypoint_error_px:.1f}px, silhouette IoU {fit.iou:.3f}")
    fit_ok = fit.iou >= cfg.fit_min_iou
    if not fit_ok:
        rt.warn(
            f"THE BODY FIT IS POOR: silhouette IoU {fit.iou:.2f} < {cfg.fit_min_iou} "
            f"(keypoint residual {fit.keypoint_error_px:.1f}px). Check {report}; "
            "a cleaner full-body photo or --mask may help"
        )
    return fit, body.face_parts.cpu().numpy(), fit_ok


def _models_used(ids: dict, *, silhouette: str, normals: str, parsing: str, prompt: str) -> dict[str, str]:
    """Product -> the model id (from the record's ``ids``) or source name that made it."""
    return {
        "keypoints": ids["keypoints"],
        "body": ids["body"],
        "silhouette": ids["sam"] if silhouette == "sam" else silhouette,
        "normal_front": ids["marigold_normals"] if normals == "marigold" else ids["body"],
        "parsing": ids["segformer_parser"] if parsing == "segformer" else ids["body"],
        "prompt": ids["blip"] if prompt == "blip" else prompt,
    }
