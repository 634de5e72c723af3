"""The back view's fallback colours: the face covered by the colour of the top of the head."""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image

from humanref_cli.train.back_reference import EYE_L, EYE_R, NOSE, cover_face

HAIR, SKIN, SHIRT = (0.3, 0.2, 0.1), (0.9, 0.7, 0.6), (0.1, 0.4, 0.8)


def _toy_person(res: int = 64):
    """A head (rows 4-27, parsing 1) with hair on rows 4-9 and a face below, a shirt below row 28,
    and face landmarks: eyes on row 14 (6 px apart), nose on row 18 (chin at 18 + 1.4 * 6 = 26.4)."""
    rgb = np.ones((res, res, 3), np.float32)
    parsing = np.zeros((res, res), np.uint8)
    parsing[4:28, 24:40] = 1
    parsing[28:60, 16:48] = 2
    rgb[4:10, 24:40] = HAIR
    rgb[10:28, 24:40] = SKIN
    rgb[28:60, 16:48] = SHIRT
    mask = parsing > 0
    kp = np.zeros((33, 2))
    kp[NOSE] = (32, 18)
    kp[EYE_L], kp[EYE_R] = (35, 14), (29, 14)
    vis = np.ones(33)
    return rgb, mask, parsing, kp, vis


def test_the_face_takes_the_colour_of_the_top_of_the_head():
    rgb, mask, parsing, kp, vis = _toy_person()
    out, covered = cover_face(rgb, mask, parsing, kp, vis)
    # hair sampled above eye row 14 - 0.8 * 6 = 9.2: rows 4-8 (pixel centres < 9.2), all HAIR
    # covered: head rows whose centres lie above the chin at 26.4, i.e. rows 4-25
    expected = np.zeros_like(mask)
    expected[4:26, 24:40] = True
    np.testing.assert_array_equal(covered, expected)
    np.testing.assert_allclose(out[4:26, 24:40], np.broadcast_to(HAIR, (22, 16, 3)), atol=1e-6)
    np.testing.assert_array_equal(out[26:28], rgb[26:28])  # below the chin: the neck stays
    np.testing.assert_array_equal(out[28:], rgb[28:])  # the shirt stays
    assert out is not rgb and np.allclose(rgb[12, 30], SKIN)  # the input is not modified


def test_nothing_is_covered_when_the_face_is_not_seen():
    rgb, mask, parsing, kp, vis = _toy_person()
    vis[NOSE] = 0.2  # a photo from behind: mediapipe is unsure of the face
    out, covered = cover_face(rgb, mask, parsing, kp, vis)
    assert covered is None and out is rgb
    vis[NOSE] = 1.0
    kp[NOSE] = (10, 40)  # the nose outside the head group
    assert cover_face(rgb, mask, parsing, kp, vis)[1] is None
    kp[NOSE] = (32, 18)
    parsing2 = parsing.copy()
    parsing2[4:10] = 0  # the head cut off at the forehead: no hair to sample
    assert cover_face(rgb, mask, parsing2, kp, vis)[1] is None


def test_the_back_view_target_is_the_covered_photo_mirrored(tmp_path):
    """load_train_data builds the back view's fallback colours from parsing.png and keypoints.json;
    without them (or with the option off) the back target is the photo mirrored, as before."""
    from humanref_cli.io import save_npy, write_json, write_png
    from humanref_cli.train.data import load_train_data

    rgb, mask, parsing, kp, vis = _toy_person()
    prep = tmp_path / "prep"
    alpha = (mask * 255).astype(np.uint8)
    write_png(prep / "image.png", np.dstack([(rgb * 255).round().astype(np.uint8), alpha]))
    write_png(prep / "mask.png", alpha)
    for side in ("front", "back"):
        save_npy(prep / f"normal_{side}.npy", np.zeros((64, 64, 3), np.float32))
    (prep / "body.ply").write_bytes(b"")
    write_png(prep / "parsing.png", parsing)
    marks = [
        {"u": float(u), "v": float(v), "visibility": float(s)} for (u, v), s in zip(kp, vis, strict=True)
    ]
    write_json(prep / "keypoints.json", {"landmarks": marks})

    bg = torch.tensor([0.0, 1.0, 0.0])
    data = load_train_data(prep, 64, torch.device("cpu"))
    back, front = data.reference(bg, back=True), data.reference(bg)
    hair = torch.tensor(HAIR)
    assert torch.allclose(back[12, 63 - 30], hair, atol=2 / 255)  # the face, mirrored, is hair
    assert torch.allclose(front[12, 30], torch.tensor(SKIN), atol=2 / 255)  # the front keeps the face
    assert torch.equal(back[30:], front[30:].flip(1))  # the shirt is the mirrored photo
    assert torch.equal(back[0, 0], bg)  # background composited as before

    off = load_train_data(prep, 64, torch.device("cpu"), cover_back_face=False)
    assert torch.equal(off.reference(bg, back=True), front.flip(1))
    assert off.premult_back is None and data.premult_back is not None  # nothing covered: no copy kept
    (prep / "keypoints.json").unlink()
    assert torch.equal(load_train_data(prep, 64, torch.device("cpu")).reference(bg, back=True), front.flip(1))


def test_the_synthetic_prep_places_the_face_too(tmp_path, subject):
    """prep_from_subject writes the subject's parsing and true landmarks (scaled to the prep's size), so
    optimisation benchmarks on ground-truth preps cover the face as a real prep does."""
    from humanref_cli.testing.synth_prep import prep_from_subject
    from humanref_cli.train.data import _keypoints
    from humanref_cli.workspace import Workspace

    prep = prep_from_subject(subject, Workspace(tmp_path / "ws"), res=256)
    kp, vis = _keypoints(prep)
    gt = json.loads((subject / "gt" / "keypoints.json").read_text())["keypoints"]
    np.testing.assert_allclose(kp[NOSE], [gt[NOSE]["u"] / 2, gt[NOSE]["v"] / 2])
    rgba = np.asarray(Image.open(prep / "image.png")).astype(np.float32) / 255
    parsing = np.asarray(Image.open(prep / "parsing.png"))
    out, covered = cover_face(rgba[..., :3], rgba[..., 3], parsing, kp, vis)
    assert covered is not None and 100 < covered.sum() < (parsing == 1).sum() + 1
