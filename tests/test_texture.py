"""Texture pieces: mesh clean-up, UV atlas, baking, the differentiable rasteriser (and the texture stage)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from humanref_cli.errors import UsageError
from humanref_cli.geometry import mesh_ops
from humanref_cli.geometry.uv_atlas import unwrap
from humanref_cli.render import bake, diff_raster
from humanref_cli.render.camera import camera_to_world, world_to_pixel
from humanref_cli.render.raster import MeshRasterizer


def procedural_color(p: torch.Tensor) -> torch.Tensor:
    """A smooth colour field ``(N, 3) -> (N, 3)`` in [0.1, 0.9] with a few bands per unit length."""
    return 0.5 + 0.4 * torch.stack(
        [
            torch.sin(6 * p[:, 0] + 1),
            torch.cos(5 * p[:, 1] + 2 * p[:, 2]),
            torch.sin(4 * p[:, 2] - 3 * p[:, 0]),
        ],
        -1,
    )


@pytest.fixture(scope="module")
def capsule():
    # subdivided: the capsule's cylinder is one band of long triangles, and vertex colours interpolated
    # across them would not be the colour field any more
    mesh = trimesh.creation.capsule(height=1.0, radius=0.3, count=[32, 32]).subdivide_to_size(0.06)
    return np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces, np.int64)


@pytest.fixture(scope="module")
def capsule_uv(capsule):
    return unwrap(*capsule, texture_size=512, padding=4)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a - b) ** 2)))


# ---------------------------------------------------------------------------------- mesh ops / atlas
def test_clean_removes_floaters_and_closes_small_holes():
    sphere = trimesh.creation.icosphere(subdivisions=4)
    floater = trimesh.creation.icosphere(subdivisions=1, radius=0.05)
    faces = sphere.faces[~np.any(sphere.faces == 0, axis=1)]  # a 5-edge hole around vertex 0
    v = np.concatenate([sphere.vertices, floater.vertices + [2.0, 0.0, 0.0]])
    f = np.concatenate([faces, floater.faces + len(sphere.vertices)])
    assert not trimesh.Trimesh(v, f, process=False).is_watertight
    cv, cf = mesh_ops.clean_mesh(v, f)
    cleaned = trimesh.Trimesh(cv, cf, process=False)
    assert cleaned.is_watertight
    assert cv[:, 0].max() < 1.01  # the floater at x = 2 is gone
    assert len(cv) == len(sphere.vertices) - 1  # only the hole's centre vertex is gone: no new vertices


def test_keep_components_ratio():
    big = trimesh.creation.icosphere(subdivisions=3)
    small = trimesh.creation.icosphere(subdivisions=2)  # 320 faces vs 1280: ratio 0.25
    v = np.concatenate([big.vertices, small.vertices + 3.0])
    f = np.concatenate([big.faces, small.faces + len(big.vertices)])
    assert len(mesh_ops.keep_large_components(v, f, 0.2)[1]) == 1600
    assert len(mesh_ops.keep_large_components(v, f, 1.0)[1]) == 1280


def test_decimate_reaches_target_and_keeps_shape():
    sphere = trimesh.creation.icosphere(subdivisions=5)  # 20480 faces
    v, f = mesh_ops.decimate(sphere.vertices, sphere.faces, 2000)
    assert 1900 <= len(f) <= 2000
    out = trimesh.Trimesh(v, f, process=False)
    assert out.is_watertight
    assert np.abs(np.linalg.norm(v, axis=1) - 1.0).max() < 0.02


def test_unwrap_keeps_geometry_and_refuses_huge_meshes(capsule, capsule_uv):
    v, f = capsule
    m = capsule_uv
    np.testing.assert_allclose(m.vertices[m.faces], v[f], atol=1e-6)  # face i is still face i
    np.testing.assert_array_equal(m.vertices, v[m.vmapping])
    assert m.uvs.min() >= 0.0 and m.uvs.max() <= 1.0
    with pytest.raises(UsageError):
        unwrap(v, f, max_faces=100)


def test_decimate_textured_keeps_the_texture_mapping(capsule_uv):
    m = capsule_uv
    texture, _ = bake.bake_texture(m.vertices, m.faces, m.uvs, procedural_color, size=256, padding=4)
    v2, f2, uv2 = mesh_ops.decimate_textured(m.vertices, m.faces, m.uvs, 1500)
    assert len(f2) <= 1500 and uv2.min() >= 0.0 and uv2.max() <= 1.0
    # each surviving vertex still shows (nearly) the colour of its 3D position
    got = bake.sample_texture(texture, uv2)
    want = procedural_color(torch.as_tensor(v2)).numpy()
    assert np.median(np.abs(got - want)) < 0.03


# ---------------------------------------------------------------------------------- baking
def test_texel_positions_follow_the_uv_convention():
    # One quad whose 3D position equals (u, v, 0) * 2: texel (row, col) must map to its centre.
    verts = np.array([[0, 0, 0], [2, 0, 0], [2, 2, 0], [0, 2, 0]], np.float32)
    uvs = verts[:, :2] / 2.0
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    size = 16
    positions, covered = bake.texel_positions(verts, faces, uvs, size)
    assert covered.all()
    rows, cols = np.mgrid[0:size, 0:size]
    np.testing.assert_allclose(positions[..., 0], 2 * (cols + 0.5) / size, atol=1e-5)
    np.testing.assert_allclose(positions[..., 1], 2 * (1 - (rows + 0.5) / size), atol=1e-5)


def test_dilate_grows_rings_and_keeps_colours():
    img = np.zeros((20, 20, 3), np.float32)
    mask = np.zeros((20, 20), bool)
    mask[8:12, 8:12] = True
    img[mask] = (0.2, 0.4, 0.6)
    out, grown = bake.dilate(img, mask, 3)
    assert grown[5:15, 5:15].all() and grown.sum() == 100
    np.testing.assert_allclose(out[grown], np.tile([0.2, 0.4, 0.6], (100, 1)), atol=1e-6)
    assert (out[~grown] == 0).all()


def test_numpy_and_torch_texture_lookups_agree():
    rng = np.random.default_rng(0)
    tex = rng.random((8, 12, 3)).astype(np.float32)
    uv = rng.random((200, 2)).astype(np.float32) * 0.8 + 0.1
    torch_out = diff_raster.sample_texture(torch.as_tensor(tex), torch.as_tensor(uv)).numpy()
    np.testing.assert_allclose(bake.sample_texture(tex, uv), torch_out, atol=1e-5)
    # a texel centre returns that texel exactly
    centre = np.array([[(3 + 0.5) / 12, 1 - (5 + 0.5) / 8]], np.float32)
    np.testing.assert_allclose(bake.sample_texture(tex, centre)[0], tex[5, 3], atol=1e-6)


def test_baked_texture_reproduces_ground_truth_views(capsule, capsule_uv):
    """Bake the colours, render the textured mesh: it matches the vertex-coloured render (PSNR >= 30 dB)."""
    m = capsule_uv
    texture, covered = bake.bake_texture(m.vertices, m.faces, m.uvs, procedural_color, size=512, padding=4)
    assert 0.3 < covered.mean() < 0.95
    v, f = capsule
    vertex_colors = procedural_color(torch.as_tensor(v)).numpy()
    tensors = [torch.as_tensor(x) for x in (m.vertices, m.faces, m.uvs, texture)]
    with MeshRasterizer(128, 128) as raster:
        for azimuth in (0.0, 90.0, 180.0, 300.0):
            c2w = camera_to_world(azimuth, 15.0)
            truth = raster.colors(v, f, vertex_colors, c2w)
            mask = raster.mask(v, f, c2w) > 0.5
            ours = diff_raster.render_textured(raster, *tensors, c2w)["rgb"].numpy()
            assert mask.sum() > 2000
            assert psnr(ours[mask], truth[mask]) >= 30.0, azimuth
            assert psnr(ours, truth) >= 30.0


def test_bake_vertex_colors_matches_color_fn(capsule):
    v, _ = capsule
    out = bake.bake_vertex_colors(v, procedural_color, chunk=100)
    np.testing.assert_allclose(out, procedural_color(torch.as_tensor(v)).numpy(), atol=1e-6)


# ---------------------------------------------------------------------------------- differentiable raster
def test_barycentrics_reproduce_pixel_centres_and_depth(capsule):
    v, f = (torch.as_tensor(x) for x in capsule)
    c2w = camera_to_world(30.0, 10.0)
    with MeshRasterizer(64, 64) as raster:
        frags = diff_raster.rasterize(raster, v, f, c2w)
        ids, depth = raster.face_ids(v.numpy(), f.numpy(), c2w)
    points = diff_raster.interpolate(v, f, frags)  # (P, 3) surface points
    uv, d = world_to_pixel(points, c2w, 64, 64)
    rows, cols = frags.pixels // 64, frags.pixels % 64
    np.testing.assert_allclose(uv[:, 0].numpy(), cols.numpy() + 0.5, atol=1e-3)
    np.testing.assert_allclose(uv[:, 1].numpy(), rows.numpy() + 0.5, atol=1e-3)
    np.testing.assert_allclose(d.numpy(), depth.reshape(-1)[frags.pixels.numpy()], atol=1e-3)
    assert torch.equal(frags.mask, torch.as_tensor(ids > 0))


def test_gradients_reach_the_texture_and_adam_fits_a_target(capsule_uv):
    m = capsule_uv
    v, f, uv = (torch.as_tensor(x) for x in (m.vertices, m.faces, m.uvs))
    target_tex, _ = bake.bake_texture(m.vertices, m.faces, m.uvs, procedural_color, size=64, padding=2)
    target_tex = torch.as_tensor(target_tex)
    texture = torch.full((64, 64, 3), 0.5, requires_grad=True)
    optim = torch.optim.Adam([texture], lr=0.05)
    cams = [camera_to_world(az, 0.0) for az in (0.0, 120.0, 240.0)]
    with MeshRasterizer(64, 64) as raster:
        targets = [diff_raster.render_textured(raster, v, f, uv, target_tex, c)["rgb"] for c in cams]
        losses = []
        for step in range(30):
            k = step % 3
            loss = (
                (diff_raster.render_textured(raster, v, f, uv, texture, cams[k])["rgb"] - targets[k])
                .square()
                .mean()
            )
            optim.zero_grad()
            loss.backward()
            if step == 0:
                assert texture.grad is not None and texture.grad.abs().sum() > 0
                assert (texture.grad.abs().sum(-1) > 0).float().mean() > 0.1
            optim.step()
            losses.append(loss.item())
    assert np.mean(losses[-3:]) < 0.1 * np.mean(losses[:3])


# ---------------------------------------------------------------------------------- texture refinement loop
class ToyGuidance:
    """Stands in for Ref-SDS in the loop's plumbing: pulls every non-front render towards grey."""

    name, models, image_size = "toy", {}, 32

    def __init__(self):
        self.calls = []

    def __call__(self, rgb, opacity, ref_rgb, azimuth, elevation, step, bg=None):
        assert rgb.shape == (1, 3, 32, 32) and opacity.shape == (1, 1, 32, 32) and ref_rgb.shape == rgb.shape
        self.calls.append((step, round(azimuth, 3)))
        return {"ref_sds": ((rgb - 0.5) * opacity).square().mean()}


def _fit_setup(capsule_uv, res=48):
    from humanref_cli.train.data import TrainData
    from humanref_cli.train.texture_fit import MeshTensors

    m = capsule_uv
    mesh = MeshTensors(
        *(torch.as_tensor(x) for x in (m.vertices, m.faces, m.uvs)),
        normals=torch.as_tensor(np.zeros_like(m.vertices)),
    )
    target, _ = bake.bake_texture(m.vertices, m.faces, m.uvs, procedural_color, size=64, padding=2)
    with MeshRasterizer(res, res) as raster:
        out = diff_raster.render_textured(
            raster, mesh.vertices, mesh.faces, mesh.uvs, torch.as_tensor(target), camera_to_world(0.0, 0.0)
        )
    mask = out["mask"]
    premult = out["rgb"] * mask[..., None]
    zeros = torch.zeros(res, res, 3)
    data = TrainData(
        premult=premult,
        mask=mask,
        normal_front=zeros,
        normal_back=zeros,
        premult_full=premult,
        mask_full=mask,
    )
    return mesh, data


def _run_fit(mesh, data, cfg, tmp_path, guidance=None, resume_from=None, stop_at=None, size=64, finest=32):
    from humanref_cli.runtime import Runtime
    from humanref_cli.train.loop import LoopIO
    from humanref_cli.train.texture_fit import LearnableTexture, fit_texture

    rt = Runtime(device_name="cpu", quiet=True)
    texture = LearnableTexture(torch.full((size, size, 3), 0.5), finest=finest, levels=3)

    def on_step(step):
        if step == stop_at:
            rt.interrupted = True

    io = LoopIO(key="k", ckpt_path=tmp_path / "ckpt" / "last.pt", resume_from=resume_from, on_step=on_step)
    scalars = fit_texture(texture, mesh, data, cfg, rt, io, guidance=guidance)
    return texture, scalars


def test_texture_fit_matches_the_front_view_at_finer_resolutions(capsule_uv, tmp_path):
    """Fitted from 48 px renders, the texture also matches a 144 px render of the target: the residual
    pyramid spreads each pixel's gradient over a patch instead of the 4 texels it samples (a single
    full-resolution level leaves a dotted texture that only looks right at the training resolution)."""
    from dataclasses import replace

    from humanref_cli.configs.texture import texture_preset
    from humanref_cli.train.texture_fit import pyramid_finest

    mesh, data = _fit_setup(capsule_uv)
    cfg = replace(texture_preset("cpu"), refine_steps=25, refine_res=48, lr=0.05)
    assert pyramid_finest(256, 48) == 64 and pyramid_finest(32, 48) == 32
    texture, scalars = _run_fit(mesh, data, cfg, tmp_path, size=256, finest=64)
    _, first = _run_fit(mesh, data, replace(cfg, refine_steps=1), tmp_path / "first", size=256, finest=64)
    assert scalars["rgb"] < 0.2 * first["rgb"]
    assert texture.texels().min() >= 0.0 and texture.texels().max() <= 1.0
    target, _ = bake.bake_texture(
        *(capsule_uv.vertices, capsule_uv.faces, capsule_uv.uvs), procedural_color, 256
    )
    grey = torch.full((8, 8, 3), 0.5)
    with MeshRasterizer(144, 144) as raster:
        renders = [
            diff_raster.render_textured(
                raster, mesh.vertices, mesh.faces, mesh.uvs, t, camera_to_world(0.0, 0.0)
            )
            for t in (texture.texels().detach(), torch.as_tensor(target), grey)
        ]
    inside = renders[0]["mask"] > 0.5
    fitted, truth, start = (r["rgb"][inside] for r in renders)
    assert (fitted - truth).square().mean() < 0.2 * (start - truth).square().mean()


def test_texture_fit_resumes_exactly_with_guidance(capsule_uv, tmp_path):
    from dataclasses import replace

    from humanref_cli.configs.texture import texture_preset
    from humanref_cli.errors import Interrupted

    mesh, data = _fit_setup(capsule_uv, res=32)
    cfg = replace(texture_preset("cpu"), refine_steps=6, refine_res=32, ckpt_every=100, ref_every=2)
    full_guidance = ToyGuidance()
    full, _ = _run_fit(mesh, data, cfg, tmp_path / "a", guidance=full_guidance)
    assert [s for s, _ in full_guidance.calls] == [1, 3, 5]  # odd steps are the random views
    with pytest.raises(Interrupted):
        _run_fit(mesh, data, cfg, tmp_path / "b", guidance=ToyGuidance(), stop_at=3)
    resumed_guidance = ToyGuidance()
    resumed, _ = _run_fit(
        mesh,
        data,
        cfg,
        tmp_path / "b",
        guidance=resumed_guidance,
        resume_from=tmp_path / "b" / "ckpt" / "last.pt",
    )
    assert resumed_guidance.calls == full_guidance.calls[1:]  # same views after the restart
    assert torch.equal(resumed.texels(), full.texels())


def test_baking_a_synthetic_subject_reproduces_its_views(tmp_path_factory):
    """The anny subject's ground-truth vertex colours, baked onto its decimated, unwrapped mesh, render back
    as the ground-truth views (PSNR >= 30 dB on front, side and back)."""
    from scipy.spatial import cKDTree

    from humanref_cli.synth.subject import make_subject

    out = tmp_path_factory.mktemp("subject")
    make_subject(out, seed=3, res=64)
    gt = trimesh.load(out / "gt" / "mesh.ply", process=False)
    v_gt, f_gt = np.asarray(gt.vertices, np.float32), np.asarray(gt.faces)
    c_gt = np.asarray(gt.visual.vertex_colors)[:, :3].astype(np.float32) / 255.0
    tree = cKDTree(v_gt)

    def gt_color(p: torch.Tensor) -> torch.Tensor:  # inverse-distance blend of the 4 nearest GT vertices
        d, i = tree.query(p.numpy(), k=4)
        w = 1.0 / np.maximum(d, 1e-6) ** 2
        w /= w.sum(axis=1, keepdims=True)
        return torch.as_tensor((c_gt[i] * w[..., None]).sum(axis=1), dtype=torch.float32)

    v, f = mesh_ops.decimate(v_gt, f_gt, 5000)
    atlas = unwrap(v, f, texture_size=512, padding=4)
    texture, _ = bake.bake_texture(atlas.vertices, atlas.faces, atlas.uvs, gt_color, size=512, padding=4)
    tensors = [torch.as_tensor(x) for x in (atlas.vertices, atlas.faces, atlas.uvs, texture)]
    with MeshRasterizer(128, 128) as raster:
        for azimuth in (0.0, 90.0, 180.0):
            c2w = camera_to_world(azimuth, 0.0)
            truth = raster.colors(v_gt, f_gt, c_gt, c2w)
            ours = diff_raster.render_textured(raster, *tensors, c2w)
            both = (raster.mask(v_gt, f_gt, c2w) > 0.5) & (ours["mask"].numpy() > 0.5)
            assert both.sum() > 500
            assert psnr(ours["rgb"].numpy()[both], truth[both]) >= 30.0, azimuth
            assert psnr(ours["rgb"].numpy(), truth) >= 30.0, azimuth
