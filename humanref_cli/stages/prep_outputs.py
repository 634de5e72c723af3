"""Writing the prep stage's outputs: the files of ``ws/prep`` (crop, mask, keypoints, body, normal maps,
parsing, regions, prompt, camera) and the ``report.png`` contact sheet.

These only write files; the stage registers them with its record (``run.add_output``).
"""

from __future__ import annotations

import numpy as np

from humanref_cli.io import save_npy, write_json, write_png, write_text


def write_outputs(run, photo, crop, rgb, mask, keypoints, fit, front, back, groups, regions, prompt) -> None:
    """Every file of ``run.dir`` but ``report.png`` (and the copied input), from the crop-frame results."""
    import trimesh

    from humanref_cli.io import atomic_path
    from humanref_cli.perception.normals import to_png

    out = run.dir
    m8 = mask.astype(np.uint8) * 255
    write_png(out / "image.png", np.concatenate([rgb, m8[..., None]], axis=-1))
    write_png(out / "mask.png", m8)
    write_json(out / "keypoints.json", _keypoints_json(photo, crop, keypoints, fit))
    write_json(out / "body.json", _body_json(fit))
    with atomic_path(out / "body.ply") as tmp:
        tmp.write_bytes(trimesh.Trimesh(fit.vertices, fit.faces, process=False).export(file_type="ply"))
    for side, n in (("front", front), ("back", back)):
        write_png(out / f"normal_{side}.png", to_png(n))
        save_npy(out / f"normal_{side}.npy", n.astype(np.float32))
    write_png(out / "parsing.png", groups.astype(np.uint8))
    write_json(out / "regions.json", regions)
    write_text(out / "prompt.txt", prompt.to_text())
    write_json(out / "camera.json", crop.camera_json(photo.loaded.size, photo.loaded.exif_rotated))


def _keypoints_json(photo, crop, keypoints, fit) -> dict:
    """``keypoints.json``: the detected landmarks in crop pixels, the person box and the fitted landmarks."""
    from humanref_cli.perception.person import detector_id

    person = photo.person
    box = crop.to_crop(np.array(person.box, np.float64).reshape(2, 2)).reshape(-1)
    return {
        "source": detector_id(photo.pose),
        "pose_model": photo.pose,
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
    }


def _body_json(fit) -> dict:
    """``body.json``: the anny parameters, the anny -> world similarity and the fit's residuals."""
    import torch

    from humanref_cli.geometry.anny_body import anny_to_world_rotation
    from humanref_cli.perception.bodyfit import ANNY_ID

    rot = anny_to_world_rotation(torch.tensor(fit.params.global_rotation, dtype=torch.float64)).tolist()
    return {
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
    }


def write_report(
    run, rgb, mask, keypoints, visibility, fit, front, back, groups, regions, notes, cfg
) -> None:
    """``report.png``: the contact sheet of the crop, keypoints, body overlay, normals and parsing,
    captioned with the stage's notes."""
    from humanref_cli.perception.normals import to_png
    from humanref_cli.perception.parsing import group_colours
    from humanref_cli.perception.report import body_overlay, body_side_view, contact_sheet

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
        side_view=body_side_view(fit.vertices, fit.faces, rgb.shape[0]),
    )
    write_png(run.dir / "report.png", sheet)
