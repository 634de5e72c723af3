"""Synthetic subjects: files, determinism, and ground truth that agrees with itself and the mesh."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import trimesh

from humanref_cli.geometry.anny_body import load_anny
from humanref_cli.io import read_png
from humanref_cli.render.camera import camera_to_world, world_to_pixel
from humanref_cli.render.raster import MeshRasterizer
from humanref_cli.synth.subject import VIEW_AZIMUTHS, make_subject

RES = 128
FILES = [
    "image.png",
    "image_rgba.png",
    "gt/mesh.ply",
    "gt/mask.png",
    "gt/normal_front.png",
    "gt/normal_back.png",
    "gt/parsing.png",
    "gt/keypoints.json",
    "gt/camera.json",
] + [f"gt/views/az_{az:03d}.png" for az in VIEW_AZIMUTHS]


@pytest.fixture(scope="module")
def body(anny_body):
    return anny_body


@pytest.fixture(scope="module")
def subjects(body, tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    summaries = {
        name: make_subject(root / name, seed, RES, body=body) for name, seed in [("a", 3), ("b", 3), ("c", 4)]
    }
    return root, summaries


def _json(path):
    return json.loads(path.read_text())


def test_every_file_is_written(subjects):
    root, summaries = subjects
    written = sorted(str(p.relative_to(root / "a")) for p in (root / "a").rglob("*") if p.is_file())
    assert written == sorted(FILES)
    assert summaries["a"]["res"] == RES and summaries["a"]["seed"] == 3
    assert read_png(root / "a" / "image.png").shape == (RES, RES, 3)
    assert read_png(root / "a" / "image_rgba.png").shape == (RES, RES, 4)
    assert read_png(root / "a" / "gt/parsing.png").dtype == np.uint8


def test_same_seed_is_byte_identical(subjects, body, tmp_path):
    root, _ = subjects
    make_subject(tmp_path / "fresh", 3, RES, body=load_anny())  # a new model and new GL contexts
    for name in FILES:
        assert (root / "a" / name).read_bytes() == (root / "b" / name).read_bytes(), name
        assert (root / "a" / name).read_bytes() == (tmp_path / "fresh" / name).read_bytes(), name


def test_seeds_differ_in_shape_pose_and_clothing(subjects):
    root, _ = subjects
    a, c = _json(root / "a/gt/camera.json"), _json(root / "c/gt/camera.json")
    assert a["body"]["phenotype"] != c["body"]["phenotype"]
    assert a["body"]["pose"] != c["body"]["pose"]
    assert a["outfit"]["shirt"] != c["outfit"]["shirt"]
    assert not np.array_equal(read_png(root / "a/image.png"), read_png(root / "c/image.png"))


def test_mask_matches_the_mesh_projection(subjects):
    root, _ = subjects
    mask = read_png(root / "a/gt/mask.png") > 127
    cam = _json(root / "a/gt/camera.json")
    c2w = torch.tensor(cam["c2w"], dtype=torch.float32)
    torch.testing.assert_close(c2w, camera_to_world(0.0, 0.0, cam["distance"]))
    mesh = trimesh.load(root / "a/gt/mesh.ply", process=False)
    with MeshRasterizer(RES, RES) as r:
        rendered = r.mask(mesh.vertices, mesh.faces, c2w) > 0.5
    np.testing.assert_array_equal(rendered, mask)
    uv, _ = world_to_pixel(torch.as_tensor(mesh.vertices, dtype=torch.float32), c2w, RES, RES)
    i, j = np.clip(np.floor(uv.numpy()).astype(int), 0, RES - 1).T
    import cv2

    grown = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    assert grown[j, i].mean() > 0.999  # every vertex projects onto (or next to) the silhouette
    # the person fills 90% of the crop along its larger side
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 == pytest.approx(0.9 * RES, abs=2)


def test_keypoints_are_on_the_body(subjects):
    root, _ = subjects
    mask = read_png(root / "a/gt/mask.png") > 127
    kp = _json(root / "a/gt/keypoints.json")
    assert kp["format"] == "mediapipe33" and len(kp["keypoints"]) == 33
    visible = [k for k in kp["keypoints"] if k is not None and k["visibility"] > 0]
    assert len(visible) >= 20
    for k in visible:
        assert mask[int(k["v"]), int(k["u"])], k["name"]
    named = {k["name"]: k for k in kp["keypoints"] if k is not None}
    assert (
        named["nose"]["v"] < named["left_shoulder"]["v"] < named["left_hip"]["v"] < named["left_ankle"]["v"]
    )
    assert named["left_shoulder"]["u"] > named["right_shoulder"]["u"]  # the person's left is image right


def test_parsing_and_normals_agree_with_the_mask(subjects):
    root, _ = subjects
    mask = read_png(root / "a/gt/mask.png") > 127
    parsing = read_png(root / "a/gt/parsing.png")
    np.testing.assert_array_equal(parsing > 0, mask)
    assert set(np.unique(parsing)) == {0, 1, 2, 3, 4}
    mean_row = [np.nonzero(parsing == k)[0].mean() for k in (1, 2, 3, 4)]
    assert mean_row == sorted(mean_row)  # head above upper above lower above feet
    front = read_png(root / "a/gt/normal_front.png").astype(np.float64) / 255 * 2 - 1
    back = read_png(root / "a/gt/normal_back.png").astype(np.float64) / 255 * 2 - 1
    np.testing.assert_array_equal(
        read_png(root / "a/gt/normal_back.png").any(-1), mask
    )  # mirrored silhouette
    assert np.abs(np.linalg.norm(front[mask], axis=-1) - 1).max() < 0.02
    assert front[mask][:, 0].mean() > 0.5 and back[mask][:, 0].mean() < -0.5  # world x: towards / away


def test_photo_alpha_and_views(subjects):
    root, _ = subjects
    mask = read_png(root / "a/gt/mask.png") > 127
    rgba = read_png(root / "a/image_rgba.png")
    alpha = rgba[..., 3] > 127
    assert (alpha & mask).sum() / (alpha | mask).sum() > 0.95
    cam = _json(root / "a/gt/camera.json")
    assert 1.4 < cam["height_m"] < 2.1
    corner = read_png(root / "a/image.png")[0, 0]
    assert corner.min() > 200  # plain light background
    front = read_png(root / "a/gt/views/az_000.png")
    np.testing.assert_array_equal(front[..., 3], rgba[..., 3])
    side = read_png(root / "a/gt/views/az_090.png")[..., 3] > 127
    assert side.sum() < alpha.sum()  # a side view of a person is narrower than the front


def test_full_resolution_subject(body, tmp_path):
    summary = make_subject(tmp_path / "s", 11, 512, body=body)
    mask = read_png(tmp_path / "s/gt/mask.png") > 127
    assert mask.shape == (512, 512) and summary["mask_fraction"] == pytest.approx(mask.mean(), abs=1e-4)
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 == pytest.approx(0.9 * 512, abs=3)
    assert abs((rows.min() + rows.max()) / 2 - 255.5) < 3 and abs((cols.min() + cols.max()) / 2 - 255.5) < 3


def test_forcing_a_style_keeps_the_rest_of_the_seed():
    from humanref_cli.synth.pose import sample_body

    for seed in range(10):
        drawn, style = sample_body(np.random.Generator(np.random.PCG64(seed)))
        same, _ = sample_body(np.random.Generator(np.random.PCG64(seed)), style)
        bent, bent_style = sample_body(np.random.Generator(np.random.PCG64(seed)), "elbows_bent")
        assert same.to_dict() == drawn.to_dict()
        assert bent_style == "elbows_bent" and bent.phenotype == drawn.phenotype
        assert bent.pose["spine01"] == drawn.pose["spine01"]


def test_elbows_bent_bends_the_elbows_past_the_drawn_styles():
    from humanref_cli.synth.pose import sample_body

    def elbows(style, seeds):
        flexion = []
        for seed in seeds:
            params, _ = sample_body(np.random.Generator(np.random.PCG64(seed)), style)
            flexion += [-params.pose["lowerarm01.L"][0], -params.pose["lowerarm01.R"][0]]
        return np.array(flexion)

    drawn = elbows(None, range(200))
    bent = elbows("elbows_bent", range(200))
    assert drawn.max() <= 0.6 and drawn.min() >= 0.0
    assert bent.min() >= 0.8 and bent.max() <= 2.1 and bent.max() > 1.9
    with pytest.raises(ValueError, match="unknown pose style"):
        sample_body(np.random.Generator(np.random.PCG64(0)), "hands_on_hips")


def test_a_forced_style_keeps_the_outfit_unless_the_seed_walks():
    """Documented in ``sample_body``: the outfit is drawn after the pose, and only ``walking`` takes a
    different number of draws than ``elbows_bent``."""
    from humanref_cli.synth.clothing import sample_outfit
    from humanref_cli.synth.pose import sample_body

    for seed in range(12):
        drawn_rng, forced_rng = (np.random.Generator(np.random.PCG64(seed)) for _ in range(2))
        _, style = sample_body(drawn_rng)
        sample_body(forced_rng, "elbows_bent")
        same = sample_outfit(drawn_rng).to_dict() == sample_outfit(forced_rng).to_dict()
        assert same == (style != "walking"), (seed, style)


def test_a_side_light_brightens_the_side_it_comes_from_and_nothing_else(subjects, body, tmp_path):
    root, _ = subjects
    make_subject(tmp_path / "left", 3, RES, body=body, light="left")
    front, left = (read_png(d / "image.png").astype(float).mean(-1) for d in (root / "a", tmp_path / "left"))
    mask = read_png(root / "a" / "gt/mask.png") > 0
    cols = np.nonzero(mask.any(0))[0]
    mid = (cols.min() + cols.max()) // 2
    # the camera's left is the image's left: lit from there, that half brightens more than the other
    gain = [
        left[:, sl][mask[:, sl]].mean() - front[:, sl][mask[:, sl]].mean()
        for sl in (slice(0, mid), slice(mid, RES))
    ]
    assert gain[0] > gain[1] + 5
    assert _json(tmp_path / "left" / "gt/camera.json")["light"] == "left"
    assert _json(root / "a" / "gt/camera.json")["light"] == "front"
    for same in ("gt/mask.png", "gt/mesh.ply", "gt/views/az_090.png"):
        assert (tmp_path / "left" / same).read_bytes() == (root / "a" / same).read_bytes()
