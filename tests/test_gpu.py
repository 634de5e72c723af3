"""The optimisation stages on CUDA: they run, and follow the CPU run of the same seed.

The GPU machine has no anny cache and no OpenGL stack, so these tests use the closed-form ellipsoid
prep of ``testing/toy_prep.py`` (checked on the CPU by the first test). The view draws and sample
jitter come from CPU generators on either device, so a CUDA run sees the same views as a CPU run and
may differ from it only by floating-point order.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from test_train import _coarse_cfg, _refine_cfg

from humanref_cli.runtime import Runtime
from humanref_cli.testing.toy_prep import AXES, ellipsoid_view, write_ellipsoid_prep
from humanref_cli.workspace import Workspace

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_ellipsoid_prep_is_the_ellipsoid(tmp_path):
    res = 64
    mask, front = ellipsoid_view(0.0, res)
    back_mask, back = ellipsoid_view(180.0, res)
    # silhouette area: pi * b * c in world units, (res / 2)^2 pixels per unit^2
    expected = np.pi * AXES[1] * AXES[2] * (res / 2) ** 2
    assert abs(mask.sum() - expected) / expected < 0.03
    np.testing.assert_allclose(np.linalg.norm(front[mask], axis=-1), 1.0, atol=1e-5)
    assert front[res // 2, res // 2, 0] > 0.99 and back[res // 2, res // 2, 0] < -0.99  # facing each camera
    np.testing.assert_array_equal(back_mask, mask[:, ::-1])  # the back camera sees the mirror image
    ws = Workspace(tmp_path / "ws")
    prep = write_ellipsoid_prep(ws, res=res)
    assert ws.record("prep")["status"] == "done"
    for name in ("image.png", "mask.png", "normal_front.npy", "normal_back.npy", "body.ply", "regions.json"):
        assert (prep / name).exists(), name


def _run(tmp_path, device: str, guidance: str = "none", models=None) -> tuple[Workspace, dict, dict]:
    from humanref_cli.stages.coarse import run_coarse
    from humanref_cli.stages.refine import run_refine

    ws = Workspace(tmp_path / f"{device}-{guidance}")
    write_ellipsoid_prep(ws, res=64)
    rt = Runtime(device_name=device, seed=0, quiet=True)
    rt.seed_everything()
    coarse = _coarse_cfg(steps=3)
    refine = _refine_cfg(start=coarse.steps, steps=3)
    if guidance != "none":  # cpu cadence r = 3: global step 5, the last, is a random view
        refine = replace(
            refine, guidance=replace(refine.guidance, mode=guidance, start_step=0, image_size=None)
        )
    c = run_coarse(ws, coarse, rt, models_dir=models)
    r = run_refine(ws, refine, rt, models_dir=models)
    return ws, c["losses"], r["losses"]


@pytest.mark.gpu
@needs_cuda
def test_coarse_and_refine_on_cuda_follow_the_cpu_run(tmp_path):
    import trimesh

    from humanref_cli.eval.metrics import geometry_metrics

    ws_cpu, coarse_cpu, refine_cpu = _run(tmp_path, "cpu")
    ws_gpu, coarse_gpu, refine_gpu = _run(tmp_path, "cuda")
    assert (
        ws_gpu.record("refine")["status"] == "done" and ws_gpu.record("refine")["notes"]["peak_gpu_gib"] > 0
    )
    for cpu, gpu in ((coarse_cpu, coarse_gpu), (refine_cpu, refine_gpu)):
        assert cpu.keys() == gpu.keys()
        for k in cpu:
            assert gpu[k] == pytest.approx(cpu[k], rel=0.05, abs=1e-4), k
    meshes = [
        trimesh.load(ws.root / "refine" / "mesh.ply", process=False, force="mesh") for ws in (ws_cpu, ws_gpu)
    ]
    m = geometry_metrics(meshes[1].vertices, meshes[1].faces, meshes[0].vertices, meshes[0].faces, 5000)
    assert m["chamfer_cm"] < 0.5


@pytest.mark.gpu
@needs_cuda
def test_refine_with_tiny_ref_sds_on_cuda(tmp_path):
    from humanref_cli.testing.tiny_sd import build_tiny_sd

    models = tmp_path / "models"
    build_tiny_sd(models / "sd15")
    ws, _, losses = _run(tmp_path, "cuda", guidance="refsds", models=models)
    assert ws.record("refine")["notes"]["guidance"] == "refsds"
    assert "ref_sds" in losses and np.isfinite(losses["ref_sds"])
    assert all(np.isfinite(v) for v in losses.values())


@pytest.mark.gpu
@needs_cuda
def test_cuda_chunk_sizes_render_the_same_image():
    import trimesh

    from humanref_cli.geometry.body_sdf import BodyPriorSDF
    from humanref_cli.geometry.field import FieldConfig, HumanField
    from humanref_cli.render.camera import camera_to_world
    from humanref_cli.render.chunks import RenderChunks, render_chunks
    from humanref_cli.render.volume import render_view

    device = torch.device("cuda")
    assert render_chunks(device).ray_chunk > RenderChunks().ray_chunk
    body = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
    body.apply_scale(AXES)
    prior = BodyPriorSDF.from_mesh(body.vertices, body.faces, resolution=64)
    torch.manual_seed(0)
    field = HumanField(FieldConfig(backend="torch", inv_std_init_theta=0.6), prior).to(device)
    cpu_sizes = RenderChunks()
    with torch.no_grad():
        args = (field, camera_to_world(30.0, 10.0).to(device), 96, 96, torch.ones(3, device=device))
        big = render_view(*args)
        small = render_view(
            *args, ray_chunk=cpu_sizes.ray_chunk // 8, sample_chunk=cpu_sizes.sample_chunk // 8
        )
    for key in ("rgb", "opacity", "normal", "depth"):
        torch.testing.assert_close(big[key], small[key], atol=1e-5, rtol=1e-5, msg=key)
    assert big["opacity"].sum() > 100  # the body is in view
