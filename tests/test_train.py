"""View schedule, checkpoints, exact resume and a few-step coarse + refine on a synthetic subject at 32 px."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import numpy as np
import pytest
import torch

from humanref_cli.configs.optim import coarse_preset, refine_preset
from humanref_cli.errors import Interrupted
from humanref_cli.render.camera import camera_to_world, orthographic_rays
from humanref_cli.runtime import Progress, Runtime
from humanref_cli.train.checkpoint import rng_state, set_rng_state
from humanref_cli.train.views import sample_view, view_kind, view_rays
from humanref_cli.workspace import Workspace

# ----------------------------------------------------------------------------------------- views


def test_view_cadence_follows_the_paper():
    views = coarse_preset("paper").views
    assert [view_kind(s, views) for s in (0, 1, 2, 9, 10, 11, 1999)] == [
        "ref", "back", "random", "random", "ref", "back", "random"
    ]  # fmt: skip
    # r = 20 from step 2000: 2010 is random, 2020 the reference again
    assert [view_kind(s, views) for s in (2000, 2001, 2010, 2011, 2020)] == [
        "ref",
        "back",
        "random",
        "random",
        "ref",
    ]
    kinds = [view_kind(s, views) for s in range(3000, 5000)]
    assert kinds.count("ref") == 100 and kinds.count("back") == 100


def test_random_views_distribution_and_determinism():
    cfg = coarse_preset("paper").views
    gen = torch.Generator().manual_seed(0)
    views = [sample_view(s, cfg, gen) for s in range(2, 2000) if view_kind(s, cfg) == "random"]
    az = np.array([v.azimuth for v in views])
    el = np.array([v.elevation for v in views])
    dist = np.array([v.distance for v in views])
    assert az.min() >= -180 and az.max() <= 180 and abs(az.mean()) < 15
    assert el.min() >= -20 and el.max() <= 20 and dist.min() >= 0.8 and dist.max() <= 1.2
    assert all(v.origin_jitter.abs().sum() == 0 for v in views)  # random views are not jittered
    # mixture of uniform-in-degrees and uniform-in-sine: both have variance ~ 20^2 / 3 (sine slightly more)
    assert np.std(el) == pytest.approx(20 / np.sqrt(3), rel=0.1)
    again = torch.Generator().manual_seed(0)
    first = sample_view(2, cfg, again)
    assert first.azimuth == views[0].azimuth and torch.equal(first.background, views[0].background)


def test_reference_view_jitter():
    cfg = coarse_preset("paper").views
    gen = torch.Generator().manual_seed(1)
    refs = [sample_view(0, cfg, gen) for _ in range(400)]
    jit = torch.stack([v.origin_jitter for v in refs])
    assert jit.std().item() == pytest.approx(0.002, rel=0.15)
    assert all(v.azimuth == 0.0 and v.elevation == 0.0 for v in refs)
    # without jitter, the rays are the camera's orthographic rays
    still = replace(refs[0], origin_jitter=torch.zeros(3), direction_jitter=torch.zeros(3))
    o, d = view_rays(still, 8, 8)
    o_ref, d_ref = orthographic_rays(camera_to_world(0.0, 0.0), 8, 8)
    assert torch.allclose(o, o_ref) and torch.allclose(d, d_ref)
    o_j, d_j = view_rays(refs[0], 8, 8)
    assert torch.allclose(o_j - o, refs[0].origin_jitter.expand(8, 8, 3), atol=1e-6) and torch.allclose(
        d_j.norm(dim=-1), torch.ones(8, 8)
    )


def test_rng_state_roundtrip():
    gen = torch.Generator().manual_seed(3)
    state = rng_state(gen)
    first = (random.random(), np.random.rand(), torch.rand(2), torch.rand(2, generator=gen))
    set_rng_state(state, gen)
    second = (random.random(), np.random.rand(), torch.rand(2), torch.rand(2, generator=gen))
    assert first[0] == second[0] and first[1] == second[1]
    assert torch.equal(first[2], second[2]) and torch.equal(first[3], second[3])


def test_presets_scale_the_schedule():
    paper, cpu = refine_preset("paper"), refine_preset("cpu")
    assert (paper.start_step, paper.end_step, paper.res) == (3000, 12000, 512)
    assert coarse_preset("paper").render_res(0) == 64 and coarse_preset("paper").render_res(2999) == 256
    assert coarse_preset("paper").render_res(1000) == 128
    assert cpu.start_step == coarse_preset("cpu").steps
    assert cpu.loss.normal_boost_step == cpu.start_step  # the boost starts with refine, as in the paper
    assert (
        cpu.guidance.start_step < cpu.guidance.clip_end_step < cpu.guidance.multi_start_step <= cpu.end_step
    )


# ----------------------------------------------------------------------------------------- loop


@pytest.fixture(scope="module")
def subject_dir(tmp_path_factory):
    from humanref_cli.synth.subject import make_subject

    out = tmp_path_factory.mktemp("subject") / "s0"
    make_subject(out, seed=0, res=64)
    return out


def _tiny(cfg, steps: int, **over):
    """A few steps at 32 px, no guidance, small grids."""
    cfg = replace(
        cfg,
        steps=steps,
        loss_res=32,
        mesh_res=48,
        guidance=replace(cfg.guidance, mode="none"),
        optim=replace(cfg.optim, preview_every=steps, preview_res=16, ckpt_every=1000, samples_per_ray=128),
        **over,
    )
    return cfg


def _coarse_cfg(steps=6):
    from humanref_cli.geometry.hashgrid import HashGridConfig

    cfg = coarse_preset("cpu")
    geometry = replace(cfg.geometry, grid=HashGridConfig(log2_table=14))
    return _tiny(
        cfg, steps, init_steps=5, init_points=1000, res_start=32, res_max=32, prior_res=48, geometry=geometry
    )


def _refine_cfg(start, steps=4):
    return _tiny(refine_preset("cpu"), steps, start_step=start, res=32)


def _workspace(tmp_path, subject_dir, name):
    from humanref_cli.testing.synth_prep import prep_from_subject

    ws = Workspace(tmp_path / name)
    prep_from_subject(subject_dir, ws, res=64)
    return ws


class InterruptAt(Runtime):
    """A runtime whose progress sets ``interrupted`` after a given step, as a Ctrl-C would."""

    stop_at: int = -1

    def progress(self, total, description, start=0):
        rt = self

        class _P(Progress):
            def update(self, step, **scalars):
                super().update(step, **scalars)
                if step == rt.stop_at:
                    rt.interrupted = True

        return _P(self, total, description, start)


def _field_tensors(ws, stage):
    from safetensors.torch import load_file

    return load_file(str(ws.root / stage / "field.safetensors"))


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, subject_dir):
    from humanref_cli.stages.coarse import run_coarse

    cfg = _coarse_cfg(steps=4)
    ws_a = _workspace(tmp_path, subject_dir, "a")
    rt = Runtime(device_name="cpu", seed=0, quiet=True)
    rt.seed_everything()
    run_coarse(ws_a, cfg, rt)

    ws_b = _workspace(tmp_path, subject_dir, "b")
    rt_b = InterruptAt(device_name="cpu", seed=0, quiet=True)
    rt_b.stop_at = 2
    rt_b.seed_everything()
    with pytest.raises(Interrupted):
        run_coarse(ws_b, cfg, rt_b)
    assert ws_b.record("coarse")["status"] == "interrupted"
    assert torch.load(ws_b.root / "coarse" / "ckpt" / "last.pt", weights_only=True)["step"] == 2
    rt_b2 = Runtime(device_name="cpu", seed=0, quiet=True)
    rt_b2.seed_everything(offset=123)  # the resumed run must not depend on the global seed state
    run_coarse(ws_b, cfg, rt_b2)
    assert ws_b.record("coarse")["resumed"] is True
    a, b = _field_tensors(ws_a, "coarse"), _field_tensors(ws_b, "coarse")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6, rtol=0), k
    changed = max((a[k] - b[k]).abs().max().item() for k in a)
    assert changed <= 1e-6


def test_coarse_then_refine_few_steps(tmp_path, subject_dir):
    import trimesh

    from humanref_cli.eval.metrics import geometry_metrics
    from humanref_cli.stages.coarse import run_coarse
    from humanref_cli.stages.refine import run_refine

    ws = _workspace(tmp_path, subject_dir, "ws")
    rt = Runtime(device_name="cpu", seed=0, quiet=True)
    rt.seed_everything()
    coarse_cfg = _coarse_cfg(steps=3)
    out = run_coarse(ws, coarse_cfg, rt)
    coarse_dir = ws.root / "coarse"
    for name in ("field.safetensors", "field.json", "ckpt/last.pt", "mesh.ply", "preview/step_00003.png"):
        assert (coarse_dir / name).exists(), name
    assert ws.record("coarse")["status"] == "done"
    assert "none" in ws.record("coarse")["notes"]["guidance"]
    assert set(out["losses"]) >= {"loss", "sdf"}

    refine_cfg = _refine_cfg(start=coarse_cfg.steps, steps=3)
    run_refine(ws, refine_cfg, rt)
    assert ws.record("refine")["status"] == "done" and ws.record("refine")["step"] == 6
    assert ws.record("refine")["notes"]["s_per_step"] > 0
    # the cpu preset takes the mesh where the renders drew the silhouette (render/silhouette_level.py)
    assert ws.record("refine")["notes"]["mesh_level"] > 0.003
    meta = json.loads((ws.root / "refine" / "field.json").read_text())
    assert meta  # the field's config travels with its weights

    # The mesh is the body, not an empty or exploded surface: within a few cm of the ground truth.
    gt = trimesh.load(subject_dir / "gt" / "mesh.ply", process=False, force="mesh")
    pred = trimesh.load(ws.root / "refine" / "mesh.ply", process=False, force="mesh")
    m = geometry_metrics(pred.vertices, pred.faces, gt.vertices, gt.faces, n_samples=3000)
    assert m["chamfer_cm"] < 4.0 and m["normal_consistency"] > 0.6

    again = run_refine(ws, refine_cfg, rt)
    assert again.get("up_to_date") is True

    from humanref_cli.stages.evaluate import run_eval

    ev = run_eval(ws, subject_dir, rt, res=32)  # the CLI's --res
    assert json.loads((ws.root / "eval.json").read_text())["geometry"] == ev["geometry"]
    # no camera.json: identity frame map, so the unaligned metric is the one computed above
    assert abs(ev["geometry_as_placed"]["chamfer_cm"] - m["chamfer_cm"]) < 0.3
    assert set(ev["novel"]["views"]) == {f"az_{a:03d}" for a in range(45, 360, 45)}
    assert 5.0 < ev["front"]["psnr"] < 60.0 and ev["front"]["res"] == 32


def test_eval_maps_the_crop_frame_to_the_subject_frame():
    from humanref_cli.eval.body_fit import crop_to_subject_world

    v = np.array([[0.3, -1.0, 1.0], [0.0, 1.0, -1.0], [0.1, 0.0, 0.0]])
    np.testing.assert_allclose(crop_to_subject_world(v, [0, 0, 512, 512], 512), v)  # whole photo
    # a crop of the photo's top-left quarter: crop corners land on the quarter's corners
    out = crop_to_subject_world(v, [0, 0, 256, 256], 512)
    np.testing.assert_allclose(out[:, 1:], [[-1.0, 1.0], [0.0, 0.0], [-0.5, 0.5]])
    np.testing.assert_allclose(out[:, 0], v[:, 0] / 2)  # depth scales with the crop


def test_subject_cameras_see_the_crop_frame_as_the_subject_frame():
    """A point seen by a subject camera lands on the same pixel, at the same depth order, as its
    crop-frame preimage seen by the mapped camera (any crop, any depth shift, any azimuth)."""
    import torch

    from humanref_cli.eval.body_fit import crop_to_subject, subject_camera_in_crop
    from humanref_cli.render.camera import camera_to_world, world_to_pixel

    k, t = crop_to_subject([100.0, 40.0, 420.0, 360.0], 512)
    t = t + np.array([0.13, 0.0, 0.0])  # a depth alignment
    crop_pts = np.random.default_rng(0).uniform(-0.8, 0.8, (50, 3))
    subject_pts = crop_pts * k + t
    for az in (45.0, 90.0, 225.0):
        c2w = camera_to_world(az, 0.0, 3.0).double().numpy()
        mapped, radius = subject_camera_in_crop(c2w, k, t)
        uv_s, d_s = world_to_pixel(torch.from_numpy(subject_pts), torch.from_numpy(c2w), 64, 64)
        uv_c, d_c = world_to_pixel(torch.from_numpy(crop_pts), torch.from_numpy(mapped), 64, 64, radius)
        np.testing.assert_allclose(uv_c.numpy(), uv_s.numpy(), atol=1e-9)
        np.testing.assert_allclose(d_c.numpy() * k, d_s.numpy(), atol=1e-9)


def test_coarse_with_tiny_ref_sds_guidance(tmp_path, subject_dir):
    from humanref_cli.stages.coarse import run_coarse
    from humanref_cli.testing.tiny_sd import build_tiny_sd

    models = tmp_path / "models"
    build_tiny_sd(models / "sd15")
    ws = _workspace(tmp_path, subject_dir, "g")
    cfg = _coarse_cfg(steps=3)  # cpu cadence r = 3: step 2 is a random view, the last one
    cfg = replace(cfg, guidance=replace(cfg.guidance, mode="refsds", start_step=0, image_size=None))
    rt = Runtime(device_name="cpu", seed=0, quiet=True)
    rt.seed_everything()
    out = run_coarse(ws, cfg, rt, models_dir=models)
    rec = ws.record("coarse")
    assert rec["notes"]["guidance"] == "refsds" and "sd15" in rec["models"]
    assert "ref_sds" in out["losses"] and np.isfinite(out["losses"]["ref_sds"])


class _PrepRecord:
    """The part of a Workspace ``without_body_normal_boost`` reads: prep's notes."""

    def __init__(self, notes: dict | None):
        self.notes = notes

    def record(self, stage: str):
        return None if self.notes is None else {"notes": self.notes}


class _Messages:
    def __init__(self):
        self.lines = []

    def info(self, msg: str) -> None:
        self.lines.append(msg)

    warn = info


def test_body_normal_maps_are_not_boosted_but_estimated_ones_are():
    from dataclasses import replace

    from humanref_cli.configs.optim import refine_preset
    from humanref_cli.stages.optimise import without_body_normal_boost

    cfg = refine_preset("cpu")
    last = cfg.end_step - 1
    assert cfg.loss.normal_multiplier(last) == 100.0  # the released x100 at the end
    rt = _Messages()
    body = without_body_normal_boost(cfg, _PrepRecord({"normals_source": "body"}), rt)
    assert [body.loss.normal_multiplier(s) for s in (cfg.start_step, last)] == [1.0, 1.0]
    assert body.loss.lambda_normal == cfg.loss.lambda_normal and "boost_body_normals" in rt.lines[0]
    # an estimated map, a prep that names no source, or the user's opt-in keep the released schedule
    for notes in ({"normals_source": "marigold"}, {}, None):
        assert without_body_normal_boost(cfg, _PrepRecord(notes), _Messages()) == cfg
    opt_in = replace(cfg, loss=replace(cfg.loss, boost_body_normals=True))
    assert without_body_normal_boost(opt_in, _PrepRecord({"normals_source": "body"}), _Messages()) == opt_in


def test_a_mesh_off_the_priors_grid_is_warned_about():
    from types import SimpleNamespace

    from humanref_cli.geometry.body_sdf import BodyPriorSDF
    from humanref_cli.stages.optimise import warn_if_mesh_off_prior_grid

    field = SimpleNamespace(prior=BodyPriorSDF(torch.zeros(24, 24, 24)))
    rt = _Messages()
    assert not warn_if_mesh_off_prior_grid(field, 24, "coarse", rt) and rt.lines == []
    assert warn_if_mesh_off_prior_grid(field, 32, "refine", rt)
    assert "mesh_res 32" in rt.lines[0] and "--set mesh_res=24" in rt.lines[0]
