"""The Guidance object on a tiny SD stack loaded through the real path: SDS/Ref-SDS gradients,
schedule, CLIP and multi-step-denoise terms, leaks, build without models, the benchmark script."""

from __future__ import annotations

import gc
import json
import warnings
from dataclasses import replace

import pytest
import torch

from humanref_cli.configs.guidance import GuidanceConfig
from humanref_cli.guidance import sds
from humanref_cli.guidance.ref_attention import ReferenceBank, ReferenceContext
from humanref_cli.testing.tiny_sd import write_toy_prep

PREP_SIZE = 64


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    from humanref_cli.testing.tiny_sd import build_tiny_clip, build_tiny_sd

    root = tmp_path_factory.mktemp("models")
    build_tiny_sd(root / "sd15")
    build_tiny_clip(root / "clip")
    return root


@pytest.fixture(scope="module")
def prep_dir(tmp_path_factory):
    return write_toy_prep(tmp_path_factory.mktemp("ws") / "prep")


def build(models_dir, prep_dir, **changes):
    """The real path: models found through models.store and loaded from disk."""
    from humanref_cli.guidance.build import build_guidance

    return build_guidance(replace(GuidanceConfig(), **changes), prep_dir, "cpu", models_dir)


@pytest.fixture(scope="module")
def loaded(models_dir, prep_dir):
    """One build's parts, so that tests of other configurations skip reloading from disk."""
    return build(models_dir, prep_dir)


def make(loaded, **changes):
    from humanref_cli.guidance.refsds import DiffusionGuidance

    cfg = replace(GuidanceConfig(), **changes)
    g = loaded
    return DiffusionGuidance(g.sd, g.embeddings, cfg, g.regions, g.models, clip=g.clip)


# -- the Guidance object -----------------------------------------------------------------------------------
def _images(seed=0, size=24):
    gen = torch.Generator().manual_seed(seed)
    rgb = torch.rand(1, 3, size, size, generator=gen)
    opacity = torch.zeros(1, 1, size, size)
    opacity[..., 2:22, 8:16] = 1.0
    ref = torch.rand(1, 3, size, size, generator=gen)
    return rgb, opacity, ref


@pytest.mark.parametrize("mode,strategy", [("refsds", 0), ("refsds", 1), ("refsds", 3), ("sds", 0)])
def test_sds_gradient_equals_weighted_noise_residual(loaded, mode, strategy):
    g = make(loaded, mode=mode, strategy=strategy)
    assert g.name == mode and g.models["sd15"].startswith("stable-diffusion-v1-5/stable-diffusion-v1-5@")
    torch.manual_seed(3)
    rgb, opacity, ref = _images()
    with torch.no_grad():
        z_ref = g.encode(g.resize(ref)) if mode == "refsds" else None
    z = g.encode(g.resize(rgb)).detach().requires_grad_(True)
    regions = g.region_attention(opacity)
    assert (regions is None) == (mode == "sds" or strategy == 3)
    out = g.sds_on_latent(z, z_ref, "back", regions)
    out.loss.backward()
    # independent recomputation of eps_hat with the same t and eps, UNet called by hand
    acp = g.sd.alphas_cumprod
    with torch.no_grad():
        cond, uncond = g.embeddings.get("back")
        emb, tt = torch.cat([cond, uncond]), out.t.repeat(2)
        z_t = sds.add_noise(z.detach(), out.eps, out.t, acp)
        kwargs = None
        if mode == "refsds":
            bank = ReferenceBank()
            z_rt = sds.add_noise(z_ref, out.eps, out.t, acp)
            g.sd.unet(
                z_rt.repeat(2, 1, 1, 1),
                tt,
                emb,
                cross_attention_kwargs={"ref": ReferenceContext("write", bank, regions)},
            )
            kwargs = {"ref": ReferenceContext("read", bank, regions)}
        ec, eu = g.sd.unet(z_t.repeat(2, 1, 1, 1), tt, emb, cross_attention_kwargs=kwargs).sample.chunk(2)
    eps_hat = ec + 7.0 * (ec - eu)
    expected = (1 - acp[out.t]).view(-1, 1, 1, 1) * (eps_hat - out.eps)
    assert 200 <= out.t.item() <= 600
    assert torch.allclose(z.grad, expected, atol=1e-6)
    assert len(g.bank) == 0


def test_reference_changes_the_gradient(loaded):
    """Ref-SDS differs from SDS, and the region strategy changes it again (same t, eps, latents)."""
    grads = {}
    rgb, opacity, ref = _images(1)
    for name, kw in {"sds": dict(mode="sds"), "s3": dict(strategy=3), "s0": dict(strategy=0)}.items():
        g = make(loaded, vae_sample=False, **kw)
        with torch.no_grad():
            z, z_ref = g.encode(g.resize(rgb)), g.encode(g.resize(ref))
        t, eps = torch.tensor([400]), torch.randn(z.shape, generator=torch.Generator().manual_seed(0))
        grads[name] = g.sds_on_latent(z, z_ref, "side", g.region_attention(opacity), t=t, eps=eps).grad
    assert (grads["sds"] - grads["s3"]).abs().max() > 1e-4
    assert (grads["s3"] - grads["s0"]).abs().max() > 1e-5


def test_build_guidance_through_the_store(loaded):
    g = loaded
    assert (g.name, g.cfg.strategy, g.image_size, g.latent_hw) == ("refsds", 0, 32, (16, 16))
    assert g.models == {
        "sd15": "stable-diffusion-v1-5/stable-diffusion-v1-5@unpinned",
        "clip": "openai/clip-vit-base-patch16@unpinned",
    }
    assert g.clip is not None and g.lpips is None and g.sd.text_encoder is None
    assert set(g.embeddings.cond) == {"front", "side", "side_rear", "back", "overhead"}
    assert not torch.equal(g.embeddings.get("back")[0], g.embeddings.get("front")[0])
    assert g.embeddings.prompt == "a photo of a person, high quality"  # prep/prompt.txt


def test_schedule_and_loss_keys(loaded):
    g = make(loaded, image_size=16)
    assert g.weights == {"ref_sds": 1e-3, "clip": 1.0, "multi_denoise": 20.0}
    rgb, opacity, ref = _images()
    assert set(g(rgb, opacity, ref, 180, 0, step=100)) == {"clip"}
    assert set(g(rgb, opacity, ref, 180, 0, step=700)) == {"clip", "ref_sds"}
    assert set(g(rgb, opacity, ref, 180, 0, step=2500)) == {"ref_sds"}
    g.lpips = lambda x, y: ((x - y) ** 2).mean()
    assert set(g(rgb, opacity, ref, 180, 0, step=9600)) == {"ref_sds", "multi_denoise"}


@pytest.mark.parametrize("n_steps", [12, pytest.param(50, marks=pytest.mark.slow)])
def test_guidance_optimises_an_image_without_leaks(loaded, n_steps):
    """Gradient reaches the render, the image changes, and no graph or bank survives a step."""
    g = make(loaded, image_size=16)  # 8x8 latents: 50 steps stay cheap
    torch.manual_seed(0)
    rgb0, opacity, ref = _images(2)
    param = torch.nn.Parameter(rgb0.clone())
    opt = torch.optim.Adam([param], lr=1e-2)

    def live_tensors():
        gc.collect()
        with warnings.catch_warnings():  # isinstance() on some torch module objects warns
            warnings.simplefilter("ignore")
            return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))

    counts = []
    for step in range(n_steps):
        losses = g(param, opacity, ref, azimuth=150.0, elevation=5.0, step=3000 + step)
        opt.zero_grad()
        losses["ref_sds"].backward()
        assert param.grad.abs().sum() > 0 and len(g.bank) == 0
        opt.step()
        del losses
        if step in (5, n_steps - 1):
            counts.append(live_tensors())
    assert counts[1] <= counts[0]
    assert (param.detach() - rgb0).abs().mean() > 1e-3


def test_multistep_denoise_target(loaded):
    from humanref_cli.guidance.multistep import denoise_timesteps, reference_guided_denoise

    g = make(loaded, image_size=16)
    _, ts = denoise_timesteps(g.sd.scheduler.config, 30, 0.2, "cpu")
    assert ts.tolist() == [200, 166, 133, 100, 67, 33]
    rgb, opacity, ref = _images()
    with torch.no_grad():
        z, z_ref = g.encode(g.resize(rgb)), g.encode(g.resize(ref))
    torch.manual_seed(0)
    target = reference_guided_denoise(g, z, z_ref, "back", g.region_attention(opacity))
    assert target.shape == (1, 3, 16, 16) and 0 <= target.min() and target.max() <= 1
    assert not target.requires_grad and len(g.bank) == 0
    torch.manual_seed(0)
    again = reference_guided_denoise(g, z, z_ref, "back", g.region_attention(opacity))
    assert torch.equal(target, again)


def test_lpips_vgg_properties():
    from torchvision.models import vgg16

    from humanref_cli.guidance.lpips_vgg import CHANNELS, LPIPSVGG

    torch.manual_seed(0)
    model = LPIPSVGG(vgg16(weights=None).features, [torch.rand(c) for c in CHANNELS]).eval()
    x = torch.rand(1, 3, 32, 32)
    assert model(x, x).item() == pytest.approx(0.0, abs=1e-7)
    assert model(x, x.flip(-1)).item() > model(x, (x + 0.01).clamp(0, 1)).item() > 0


def test_clip_losses_gradient_and_face_painting(loaded):
    g = loaded
    rgb, opacity, ref = _images()
    rgb.requires_grad_(True)
    bg = torch.tensor([0.2, 0.5, 0.9])
    loss = g.clip(rgb, opacity, ref, bg, "back")
    loss.backward()
    assert -2.0 <= loss.item() <= 2.0 and rgb.grad.abs().sum() > 0
    band, box = g.clip.face_masks((24, 24), "cpu")
    assert band[0, 0, 3, 0] == 1 and band[0, 0, 8, 0] == 0  # face rows 4..14 of 64 -> 1..5 of 24
    assert box[0, 0, 3, 0] == 0 and box[0, 0, 3, 12] == 1


def test_clip_replaces_sds_on_near_front_views_early(loaded):
    g = make(loaded, image_size=16)
    assert g.clip_replaces_sds(700, 10.0, 300) and g.clip_replaces_sds(1999, -20.0, 400)
    assert not g.clip_replaces_sds(700, 40.0, 300)  # not near the front
    assert not g.clip_replaces_sds(700, 10.0, 401)  # t too large
    assert not g.clip_replaces_sds(2000, 10.0, 300) and not g.clip_replaces_sds(500, 10.0, 300)
    rgb, opacity, ref = _images()
    rgb.requires_grad_(True)
    z = g.encode(g.resize(rgb))
    with torch.no_grad():
        z_ref = g.encode(g.resize(ref))
    t, eps = torch.tensor([300]), torch.randn(z.shape)
    bg = torch.tensor([0.5, 0.5, 0.5])
    loss = g.clip_on_denoised(z, z_ref, "front", g.region_attention(opacity), t, eps, opacity, ref, bg)
    loss.backward()
    assert rgb.grad.abs().sum() > 0 and len(g.bank) == 0 and -2.0 <= loss.item() <= 2.0


def test_background_colour_estimate(loaded):
    g = loaded
    c = torch.tensor([0.1, 0.7, 0.3])
    m = g.regions.mask[None, None]
    ref = torch.rand(1, 3, PREP_SIZE, PREP_SIZE) * m + c.view(1, 3, 1, 1) * (1 - m)
    assert torch.allclose(g.background_colour(ref), c, atol=1e-6)


def test_build_without_models(tmp_path, prep_dir):
    from humanref_cli.errors import MissingModel
    from humanref_cli.guidance.build import build_guidance

    empty = tmp_path / "models"
    empty.mkdir()
    assert build_guidance(GuidanceConfig(), prep_dir, "cpu", empty) is None
    assert build_guidance(GuidanceConfig(mode="none", require_guidance=True), prep_dir, "cpu", empty) is None
    with pytest.raises(MissingModel) as err:
        build_guidance(GuidanceConfig(require_guidance=True), prep_dir, "cpu", empty)
    assert err.value.exit_code == 5 and "humanref models pull sd15" in err.value.hint


def test_config_validation_and_presets():
    from humanref_cli.configs.guidance import preset
    from humanref_cli.errors import UsageError

    paper = preset("paper")
    assert (paper.mode, paper.strategy, paper.cfg_scale, paper.start_step) == ("refsds", 0, 7.0, 600)
    assert (paper.t_min, paper.t_max, paper.lambda_ref_sds, paper.lambda_multi) == (0.2, 0.6, 1e-3, 20.0)
    with pytest.raises(UsageError):
        GuidanceConfig(strategy=4)
    with pytest.raises(UsageError):
        GuidanceConfig(mode="vsd")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fp16_reference_attention_on_gpu(models_dir, prep_dir):
    from humanref_cli.guidance.build import build_guidance

    g = build_guidance(GuidanceConfig(), prep_dir, "cuda", models_dir)
    assert g.sd.dtype == torch.float16
    rgb, opacity, ref = (x.cuda() for x in _images())
    rgb.requires_grad_(True)
    g(rgb, opacity, ref, 180, 0, step=3000)["ref_sds"].backward()
    assert torch.isfinite(rgb.grad).all() and rgb.grad.abs().sum() > 0


def _bench_module():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "bench" / "guidance_gpu.py"
    spec = importlib.util.spec_from_file_location("guidance_gpu_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_bench_runs_on_cpu_at_tiny_size(tmp_path):
    bench = _bench_module()
    out = tmp_path / "guidance_gpu.json"
    args = ["--device", "cpu", "--tiny", "--size", "16", "--steps", "1", "--warmup", "0", "--out", str(out)]
    result = bench.main([*args, "--skip-refine"])
    saved = json.loads(out.read_text())
    assert [r["guidance"] for r in saved["rows"]] == ["sds", "refsds s3", "refsds s0"]
    assert all(r["s_per_step"] > 0 for r in result["rows"]) and saved["size"] == 16
    assert bench.SD15_UNET["cross_attention_dim"] == 768 and bench.SD15_VAE["scaling_factor"] == 0.18215


@pytest.mark.slow
def test_bench_refine_step_on_cpu(tmp_path):
    bench = _bench_module()
    args = ["--device", "cpu", "--tiny", "--size", "16", "--steps", "1", "--warmup", "0"]
    result = bench.main([*args, "--out", str(tmp_path / "b.json")])
    assert result["refine_step"]["render_refsds_s_per_step"] > 0
