"""Guidance building blocks: prompts, SDS maths, region masks, reference-attention processors."""

from __future__ import annotations

import json
import math

import pytest
import torch

from humanref_cli.guidance import sds
from humanref_cli.guidance.prompts import clean_caption, view_class, view_prompt
from humanref_cli.guidance.ref_attention import (
    ReferenceAttnProcessor,
    ReferenceBank,
    ReferenceContext,
    RegionAttention,
    install_reference_attention,
    region_bias,
)
from humanref_cli.guidance.regions import (
    Regions,
    load_regions,
    reference_masks,
    render_masks,
    to_grid,
    token_grid,
)
from humanref_cli.testing.tiny_sd import write_toy_prep

PREP_SIZE = 64


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    from humanref_cli.testing.tiny_sd import build_tiny_sd

    root = tmp_path_factory.mktemp("models")
    build_tiny_sd(root / "sd15")
    return root


@pytest.fixture(scope="module")
def prep_dir(tmp_path_factory):
    return write_toy_prep(tmp_path_factory.mktemp("ws") / "prep")


# -- prompts -------------------------------------------------------------------------------------------
def test_view_classes_and_caption():
    assert [view_class(a, 0) for a in (0, 29, 31, 90, 91, 150, 151, 180, -170, 200)] == [
        "front", "front", "side", "side", "side_rear", "side_rear", "back", "back", "back", "back",
    ]  # fmt: skip
    assert view_class(0, 61) == "overhead"
    assert view_prompt("a man", 180, 0) == "a man, back view, no face"
    assert clean_caption("there is a close up of a man on black background") == (
        "a photo of a man on ground, high quality"
    )


# -- maths -----------------------------------------------------------------------------------------------
def test_sds_maths_closed_form():
    acp = torch.linspace(0.99, 0.01, 1000)
    t = torch.tensor([200, 600])
    z0, eps = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    z_t = sds.add_noise(z0, eps, t, acp)
    assert torch.allclose(z_t[1], acp[600].sqrt() * z0[1] + (1 - acp[600]).sqrt() * eps[1])
    assert torch.allclose(sds.sds_weight(t, acp).flatten(), 1 - acp[t])
    ec, eu = torch.randn(2, 4), torch.randn(2, 4)
    assert torch.allclose(sds.classifier_free_guidance(ec, eu, 7.0), 8 * ec - 7 * eu)
    torch.manual_seed(0)
    ts = sds.sample_timesteps(4000, 1000, 0.2, 0.6, "cpu")
    assert ts.min() == 200 and ts.max() == 600
    z = torch.randn(1, 4, 3, 3, requires_grad=True)
    g = torch.randn(1, 4, 3, 3)
    sds.sds_loss(z, g).backward()
    assert torch.allclose(z.grad, g, atol=1e-6, rtol=0)  # exact up to the rounding of z - (z - g)


# -- regions ---------------------------------------------------------------------------------------------
def test_region_masks_from_prep(prep_dir):
    regions = load_regions(prep_dir)
    ref = reference_masks(regions, 0)
    assert ref.shape == (5, PREP_SIZE, PREP_SIZE)
    m = regions.mask
    assert torch.equal(ref[0], 1 - m)
    assert ref[1, 2:16, 22:42].sum() == m[2:16, 22:42].sum() and ref[1].sum() == m[2:16, 22:42].sum()
    assert ref[4, 61, 30] == 0 and ref[4, 55, 30] == 1  # feet box ∩ silhouette
    assert reference_masks(regions, 2).shape == (2, PREP_SIZE, PREP_SIZE)
    # render: bands of the reference rows at the render's own resolution (32 px -> rows halve)
    opacity = torch.zeros(32, 32)
    opacity[:, 4:10] = 1.0  # a body placed elsewhere horizontally: bands still match by height
    ren = render_masks(opacity, regions, 0)
    assert torch.equal(ren[0], 1 - opacity)
    assert ren[1, 1:8, 4:10].eq(1).all() and ren[1, 8:, :].eq(0).all() and ren[1, :, 12:].eq(0).all()
    assert ren[3, 16:26, 5].eq(1).all() and ren[3, 27, 5] == 0


def test_bad_regions_file_is_an_upstream_error(tmp_path):
    from humanref_cli.errors import UpstreamError

    prep = write_toy_prep(tmp_path / "prep")
    (prep / "regions.json").write_text(json.dumps({"parts": {}}))
    with pytest.raises(UpstreamError):
        load_regions(prep)
    (prep / "regions.json").write_text(json.dumps({"size": [32, 32], "parts": {}}))
    with pytest.raises(UpstreamError, match="differs"):
        load_regions(prep)


def test_region_degenerate_masks():
    full, empty = torch.ones(2, 8, 8), torch.zeros(2, 8, 8)
    assert to_grid(full, (4, 4)).all() and not to_grid(empty, (4, 4)).any()
    regions = Regions(torch.ones(16, 16), {})  # silhouette covers everything, no parts
    ren = render_masks(torch.ones(16, 16), regions, 0)
    assert ren.sum() == 0  # 1 - O is empty and every band channel is empty
    # no region anywhere: strategy 0 scales every key by 0.3, i.e. no change after renormalising
    q = torch.zeros(4, 5, dtype=torch.bool)
    b = region_bias(q, q, q, 0)
    assert torch.allclose(b, torch.full((4, 8), math.log(0.3)))
    assert token_grid((64, 64), 256) == (16, 16) and token_grid((5, 7), 12) == (3, 4)


def test_region_bias_toy_example():
    # regions [bg, A, B]; queries q0: bg, q1: A, q2: A+B; reference keys r0: bg, r1: B
    q = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 1, 1]], dtype=torch.bool)
    r = torch.tensor([[1, 0, 0], [0, 0, 1]], dtype=torch.bool)
    w = 0.3
    expected0 = torch.tensor(
        [[1, w, w, 1, w], [w, 1, 1, w, w], [w, 1, 1, w, 1]],
    )
    assert torch.allclose(region_bias(q, q, r, 0).exp(), expected0)
    expected1 = torch.tensor([[1, 1, 1, 3, 0], [1, 1, 1, 0, 0], [1, 1, 1, 0, 3.0]])
    assert torch.allclose(region_bias(q, q, r, 1).exp(), expected1)
    # Pass A (write) of strategy 0: reference keys only
    assert torch.allclose(region_bias(r, r, None, 0).exp(), torch.tensor([[1, w], [w, 1]]))


# -- attention processors --------------------------------------------------------------------------------
def _attention():
    from diffusers.models.attention_processor import Attention

    torch.manual_seed(0)
    return Attention(query_dim=32, heads=4, dim_head=8).eval()


def _manual_attention(attn, h, kv, multiplier=None):
    """Hand-written softmax attention with explicit probability reweighting + renormalisation."""
    b, n, _ = h.shape
    q = attn.to_q(h).view(b, n, 4, 8).transpose(1, 2)
    k = attn.to_k(kv).view(b, -1, 4, 8).transpose(1, 2)
    v = attn.to_v(kv).view(b, -1, 4, 8).transpose(1, 2)
    p = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(8), dim=-1)
    if multiplier is not None:
        p = p * multiplier
        p = p / p.sum(-1, keepdim=True)
    out = (p @ v).transpose(1, 2).reshape(b, n, 32)
    return attn.to_out[0](out)


@torch.no_grad()
def test_processor_matches_handwritten_attention():
    attn = _attention()
    proc = ReferenceAttnProcessor("layer")
    h, h_ref = torch.randn(2, 16, 32), torch.randn(2, 16, 32)
    default = attn.processor(attn, h)
    assert torch.equal(proc(attn, h), default)  # no context: diffusers' default, bit for bit
    bank = ReferenceBank()
    written = proc(attn, h_ref, ref=ReferenceContext("write", bank))
    assert torch.allclose(written, attn.processor(attn, h_ref), atol=1e-6)
    assert torch.equal(bank.states["layer"], h_ref)
    read = proc(attn, h, ref=ReferenceContext("read", bank))
    assert torch.allclose(read, _manual_attention(attn, h, torch.cat([h, h_ref], 1)), atol=1e-5)
    assert not torch.allclose(read, default, atol=1e-3)


@pytest.mark.parametrize("strategy", [0, 1, 2])
@torch.no_grad()
def test_region_processor_matches_explicit_reweighting(strategy):
    attn = _attention()
    proc = ReferenceAttnProcessor("layer")
    gen = torch.Generator().manual_seed(strategy)
    n_regions = 2 if strategy == 2 else 5
    ref_m = torch.rand(n_regions, 4, 4, generator=gen) > 0.6
    ren_m = torch.rand(n_regions, 4, 4, generator=gen) > 0.6
    ren_m[:, 0, 0] = False  # a query token in no region at all
    regions = RegionAttention(ref_m, ren_m, strategy)
    h, h_ref = torch.randn(2, 16, 32, generator=gen), torch.randn(2, 16, 32, generator=gen)
    bank = ReferenceBank()
    wrote = proc(attn, h_ref, ref=ReferenceContext("write", bank, regions))
    read = proc(attn, h, ref=ReferenceContext("read", bank, regions))
    q_mem, r_mem = ren_m.flatten(1).T.float(), ref_m.flatten(1).T.float()
    shared_own, shared_ref = (q_mem @ q_mem.T) > 0, (q_mem @ r_mem.T) > 0
    if strategy == 0:
        m = torch.where(torch.cat([shared_own, shared_ref], 1), 1.0, 0.3)
        shared_rr = (r_mem @ r_mem.T) > 0
        expected_write = _manual_attention(attn, h_ref, h_ref, torch.where(shared_rr, 1.0, 0.3))
    else:
        m = torch.cat([torch.ones(16, 16), torch.where(shared_ref, 3.0, 0.0)], 1)
        expected_write = _manual_attention(attn, h_ref, h_ref)
    assert torch.allclose(wrote, expected_write, atol=1e-5)
    assert torch.allclose(read, _manual_attention(attn, h, torch.cat([h, h_ref], 1), m), atol=1e-5)


@torch.no_grad()
def test_unet_processors_default_equivalence_and_bank(models_dir):
    from humanref_cli.guidance.loading import load_sd

    sd = load_sd(models_dir / "sd15", "cpu")
    unet = sd.unet
    torch.manual_seed(1)
    z, emb, t = torch.randn(2, 4, 16, 16), torch.randn(2, 77, 32), torch.tensor([300, 300])
    before = unet(z, t, emb).sample
    procs = install_reference_attention(unet)
    assert set(procs) == set(unet.attn_processors) and len(procs) == 14
    assert torch.equal(unet(z, t, emb).sample, before)
    bank = ReferenceBank()
    written = unet(z, t, emb, cross_attention_kwargs={"ref": ReferenceContext("write", bank)}).sample
    assert torch.allclose(written, before, atol=1e-5)  # writing does not change the reference pass
    assert sorted(bank.states) == sorted(n for n in procs if ".attn1." in n)  # self-attention only
    assert {s.shape[1] for s in bank.states.values()} == {256, 64}  # 16x16 and 8x8 token grids
    # reading its own states back: K/V = [h; h], which is exactly plain self-attention again
    read = unet(z, t, emb, cross_attention_kwargs={"ref": ReferenceContext("read", bank)}).sample
    assert torch.allclose(read, before, atol=1e-4)
    other = ReferenceBank()
    unet(torch.randn_like(z), t, emb, cross_attention_kwargs={"ref": ReferenceContext("write", other)})
    changed = unet(z, t, emb, cross_attention_kwargs={"ref": ReferenceContext("read", other)}).sample
    assert (changed - before).abs().max() > 1e-3
