"""The prep stage's per-product helpers: front/back normal maps, body parsing and regions, the prompt.

Each uses its full-quality model when it is in ``found`` (role -> model directory) and otherwise the
embedded default (the fitted body, the default prompt), and says which source ran.
"""

from __future__ import annotations

import numpy as np


def normal_maps(fit, mask, rgb, rt, found) -> tuple[np.ndarray, np.ndarray, str]:
    """Front and back ``(H, W, 3)`` world normal maps and the front map's source name."""
    from humanref_cli.perception.normals import body_normal_maps, marigold_front_normals

    front, back = body_normal_maps(fit.vertices, fit.faces, mask)
    if "marigold_normals" not in found:
        return front, back, "body"
    rt.info("prep: front normals from Marigold")
    return marigold_front_normals(found["marigold_normals"], rgb, mask, rt.device), back, "marigold"


def body_parsing(fit, face_parts, mask, rgb, rt, found) -> tuple[np.ndarray, dict, str]:
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


def photo_prompt(rgb, mask, user_prompt, rt, found):
    """The prompt: the user's, else built from a BLIP caption when BLIP is present, else the default."""
    from humanref_cli.perception.prompt import blip_caption, make_prompt

    caption = None
    if not user_prompt and "blip" in found:
        caption = blip_caption(found["blip"], rgb, rt.device)
        rt.info(f"prep: BLIP caption: {caption!r}")
    return make_prompt(user_prompt, caption)
