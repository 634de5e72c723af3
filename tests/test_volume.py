"""Volume renderer: analytic sphere against closed forms, compositing maths, chunking, occupancy."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import trimesh
from torch import nn

from humanref_cli.geometry.body_sdf import BodyPriorSDF
from humanref_cli.geometry.field import FieldConfig, HumanField, laplace_density
from humanref_cli.geometry.hashgrid import HashGridConfig
from humanref_cli.render.camera import camera_to_world, orthographic_rays, world_to_pixel
from humanref_cli.render.occupancy import OccupancyGrid
from humanref_cli.render.sdf_skip import outside_distance, skip_plan
from humanref_cli.render.volume import (
    DEFAULT_STEP,
    exclusive_transmittance,
    march_rays,
    prune_candidates,
    render_view,
    render_weights,
)


class SphereField(nn.Module):
    """Analytic sphere with the renderer-facing interface of HumanField; colour = (x + 1) / 2."""

    def __init__(self, centre=(0.0, 0.1, -0.05), radius=0.6, inv_std=1000.0):
        super().__init__()
        self.cfg = SimpleNamespace(bound=1.0)
        self.centre = torch.tensor(centre)
        self.radius = nn.Parameter(torch.tensor(radius))
        self.theta = nn.Parameter(torch.tensor(math.log(inv_std) / 10))

    def sdf(self, x):
        return (x - self.centre).norm(dim=-1, keepdim=True) - self.radius

    def sdf_and_features(self, x):
        s = self.sdf(x)
        return s, s.detach(), x

    def color_from_features(self, feat):
        return ((feat + 1) / 2).clamp(0, 1)

    def normal(self, x, sdf=None):
        return nn.functional.normalize(x - self.centre, dim=-1), self.sdf(x) if sdf is None else sdf

    def inv_std(self):
        return torch.exp(self.theta * 10).clamp(1e-6, 1e6)

    def density(self, sdf, inv_std=None):
        return laplace_density(sdf, self.inv_std() if inv_std is None else inv_std)


def tiny_field(seed=0) -> HumanField:
    torch.manual_seed(seed)
    mesh = trimesh.creation.icosphere(subdivisions=2, radius=0.5)
    prior = BodyPriorSDF.from_mesh(mesh.vertices, mesh.faces, resolution=24)
    cfg = FieldConfig(
        grid=HashGridConfig(n_levels=4, log2_table=12, base_res=8, per_level_scale=1.6), sdf_levels=2
    )
    field = HumanField(cfg, prior)
    with torch.no_grad():
        field.encoding.params.uniform_(-0.05, 0.05)  # a visible offset, so gradients are non-trivial
    return field


@pytest.mark.parametrize("azimuth", [0.0, 90.0, 200.0])
def test_sphere_silhouette_normals_depth_colour(azimuth):
    field = SphereField()
    res, r = 48, 0.6
    c2w = camera_to_world(azimuth, 0.0, 1.0)
    bg = torch.tensor([0.2, 0.3, 0.4])
    with torch.no_grad():
        out = render_view(field, c2w, res, res, bg)
    origins, dirs = orthographic_rays(c2w, res, res)
    # closed form: distance of each ray (pixel centre) from the sphere centre, first hit along the ray
    rel = field.centre - origins
    along = (rel * dirs).sum(-1)
    rho = (rel - along[..., None] * dirs).norm(dim=-1)
    px = 2 / res
    inside, outside = rho < r - 1.5 * px, rho > r + 1.5 * px
    assert (out["opacity"][..., 0][inside] > 0.99).all()
    assert (out["opacity"][..., 0][outside] < 0.01).all()
    torch.testing.assert_close(out["rgb"][outside], bg.expand(int(outside.sum()), 3))
    core = rho < 0.8 * r
    t_hit = along - torch.sqrt((r**2 - rho**2).clamp_min(0))
    hit = origins + t_hit[..., None] * dirs
    n_true = (hit - field.centre) / r
    cos = (out["normal_unit"] * n_true).sum(-1)[core]
    assert cos.min() > 0.995
    torch.testing.assert_close(out["normal"][core], out["normal_unit"][core] * out["opacity"][core])
    assert (out["normal"][outside].abs() < 0.01).all()
    assert (out["depth"][..., 0][core] - t_hit[core]).abs().max() < 0.01
    assert ((out["rgb"] - (hit + 1) / 2)[core].abs().max()) < 0.01
    # the silhouette is centred where camera.world_to_pixel puts the sphere centre
    uv, _ = world_to_pixel(field.centre[None], c2w, res, res)
    cols = torch.arange(res) + 0.5
    mask = out["opacity"][..., 0] > 0.5
    centroid_u = (mask.float().sum(0) * cols).sum() / mask.sum()
    assert abs(float(centroid_u - uv[0, 0])) < 0.5


def test_weights_match_hand_computation():
    alpha = torch.tensor([0.5, 0.5, 0.2, 1.0, 0.3, 0.1])
    rays = torch.tensor([0, 0, 1, 2, 2, 2])
    expected = torch.tensor([0.5, 0.25, 0.2, 1.0, 0.0, 0.0])
    torch.testing.assert_close(render_weights(alpha, rays), expected, atol=1e-9, rtol=0)
    torch.testing.assert_close(exclusive_transmittance(alpha, rays)[:3], torch.tensor([1.0, 0.5, 1.0]))


def test_weights_match_loop_on_random_alphas():
    torch.manual_seed(0)
    counts = torch.randint(0, 40, (50,))
    rays = torch.repeat_interleave(torch.arange(50), counts)
    alpha = torch.rand(len(rays)) ** 3
    w = render_weights(alpha, rays)
    expected = []
    for ray in range(50):
        trans = 1.0
        for a in alpha[rays == ray].tolist():
            expected.append(a * trans)
            trans *= 1 - a
    torch.testing.assert_close(w, torch.tensor(expected), atol=1e-6, rtol=1e-5)


def test_march_rays_bounds_and_stratified():
    origins = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.9, 0.9], [3.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    dirs = torch.tensor([[-1.0, 0, 0], [-1.0, 0, 0], [-1.0, 0, 0], [-1.0, 0, 0]])
    dt = 0.05
    g = torch.Generator().manual_seed(0)
    for stratified in (False, True):
        rays, t = march_rays(origins, dirs, step_size=dt, max_samples=512, stratified=stratified, generator=g)
        counts = torch.bincount(rays, minlength=4)
        assert counts.tolist()[:2] == [40, 40] or stratified  # box depth 2 from the origin plane x = 1
        assert counts[3] == 0  # misses the box
        near = torch.tensor([0.0, 0.0, 2.0, 0.0])[rays]
        assert ((t - near) >= 0.5 * dt - 1e-6).all() and ((t - near) <= 2 - 0.5 * dt + 1e-6).all()
    _, t = march_rays(origins[:1], dirs[:1], step_size=dt, max_samples=7)
    assert len(t) == 7


def test_chunked_equals_unchunked_with_gradients():
    field = tiny_field()
    c2w = camera_to_world(30.0, 10.0, 1.0)
    bg = torch.tensor([1.0, 0.5, 0.0])

    def run(**kw):
        field.zero_grad(set_to_none=True)
        g = torch.Generator().manual_seed(5)
        out = render_view(field, c2w, 12, 12, bg, stratified=True, generator=g, **kw)
        loss = (
            out["rgb"].square().mean()
            + out["normal"].sum()
            + out["sample_sdf"].square().mean()
            + (out["sample_sdf"] - out["sample_sdf_perturb"]).abs().mean()
        )
        loss.backward()
        grads = [p.grad.clone() for p in (field.encoding.params, field.theta, field.sdf_head[0].weight)]
        return out, grads

    big, g_big = run(use_checkpoint=False)
    small, g_small = run(ray_chunk=17, sample_chunk=1500, use_checkpoint=True)
    assert big["sample_t"].numel() > 200
    for key in ("rgb", "opacity", "normal", "depth", "sample_sdf", "sample_normal_perturb"):
        torch.testing.assert_close(small[key], big[key], atol=1e-5, rtol=1e-5)
    for a, b in zip(g_small, g_big, strict=True):
        assert torch.isfinite(b).all() and b.abs().sum() > 0
        torch.testing.assert_close(a, b, atol=1e-4 * float(b.abs().max()), rtol=1e-4)  # summation order


def test_occupied_reads_the_cell_of_each_point():
    """``occupied`` against a per-point loop: the cell ``floor((x + bound) / cell)``, False outside."""
    occ = OccupancyGrid(resolution=8)
    torch.manual_seed(0)
    occ.binary.copy_(torch.rand(8, 8, 8) > 0.5)
    x = torch.rand(50, 7, 3) * 2.6 - 1.3  # about a third of the points outside the box
    got = occ.occupied(x)
    assert got.shape == (50, 7)
    for p, g in zip(x.reshape(-1, 3).tolist(), got.reshape(-1).tolist(), strict=True):
        ijk = [int((c + 1.0) // 0.25) for c in p]
        expected = all(0 <= i < 8 for i in ijk) and bool(occ.binary[ijk[0], ijk[1], ijk[2]])
        assert g == expected


def test_occupancy_grid_skips_empty_space_without_changing_the_render():
    field = SphereField(centre=(0.0, 0.0, 0.0), radius=0.4, inv_std=20.0)
    occ = OccupancyGrid()  # 32^3, the released resolution
    g = torch.Generator().manual_seed(0)
    occ.build(field, generator=g)
    assert occ.binary[16, 16, 16] and not occ.binary[0, 0, 0]
    assert occ.binary.float().mean() < 0.3
    probe = torch.tensor([[0.0, 0.0, 0.0], [0.95, 0.95, 0.95], [1.5, 0.0, 0.0]])
    assert occ.occupied(probe).tolist() == [True, False, False]
    c2w = camera_to_world(0.0, 0.0, 1.0)
    origins, dirs = orthographic_rays(c2w, 24, 24)
    candidates_occ, _ = march_rays(origins.reshape(-1, 3), dirs.reshape(-1, 3), occ=occ)
    candidates_all, _ = march_rays(origins.reshape(-1, 3), dirs.reshape(-1, 3))
    assert len(candidates_occ) < 0.3 * len(candidates_all)
    with torch.no_grad():
        with_occ = render_view(field, c2w, 24, 24, torch.ones(3), occ=occ)
        without = render_view(field, c2w, 24, 24, torch.ones(3))
    assert (with_occ["opacity"] - without["opacity"]).abs().max() < 1e-3
    # update(): only every 16 steps; a full refresh during warm-up, partial afterwards
    assert not occ.update(field, step=3, generator=g)
    assert occ.update(field, step=16, generator=g)
    assert occ.update(field, step=512, generator=g) and occ.binary[16, 16, 16]


def test_render_gradients_reach_every_parameter_group():
    field = tiny_field()
    out = render_view(field, camera_to_world(0.0, 0.0, 1.0), 10, 10, torch.zeros(3))
    mask = torch.zeros(10, 10, 1)
    mask[3:7, 3:7] = 1
    loss = (out["opacity"] - mask).square().mean() + out["rgb"].mean() + out["sample_normal_perturb"].sum()
    loss.backward()
    for name, params in field.param_groups().items():
        for p in params:
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def _sphere_view(res=32, azimuth=30.0):
    origins, dirs = orthographic_rays(camera_to_world(azimuth, 10.0, 1.0), res, res)
    return origins.reshape(-1, 3), dirs.reshape(-1, 3)


def test_marching_within_the_occupied_box_gives_the_same_samples():
    """The window over the occupied cells' box only drops samples whose cells are empty."""
    field = SphereField(centre=(0.3, -0.2, 0.1), radius=0.25, inv_std=500.0)
    occ = OccupancyGrid()
    occ.build(field, generator=torch.Generator().manual_seed(0))
    lo, hi = occ.occupied_bounds()
    assert (lo <= torch.tensor([0.05, -0.45, -0.15])).all() and (hi >= torch.tensor([0.55, 0.05, 0.35])).all()
    assert (hi - lo).max() < 1.0  # the sphere's box, not the scene's
    for azimuth in (0.0, 30.0, 135.0):
        origins, dirs = _sphere_view(24, azimuth)
        for stratified in (False, True):
            g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
            rays, t = march_rays(origins, dirs, occ=occ, stratified=stratified, generator=g1)
            rays_all, t_all = march_rays(origins, dirs, stratified=stratified, generator=g2)
            keep = occ.occupied(origins[rays_all] + dirs[rays_all] * t_all[:, None])
            assert len(rays) > 100
            assert torch.equal(rays, rays_all[keep]) and torch.equal(t, t_all[keep])
    occ.binary.zero_()
    assert occ.occupied_bounds() is None
    assert len(march_rays(origins, dirs, occ=occ)[0]) == 0


def test_outside_distance_is_where_the_opacity_falls_below_the_threshold():
    inv_std, dt = 665.0, 1.732 * 2 / 512
    s_min = outside_distance(inv_std, dt, 1e-6)
    assert s_min == pytest.approx(math.log(inv_std * dt / 2e-6) / inv_std)  # 0.0220
    alpha = lambda s: float(laplace_density(torch.tensor(s).double(), torch.tensor(inv_std).double()) * dt)  # noqa: E731
    assert alpha(s_min) == pytest.approx(1e-6, rel=1e-4)
    assert alpha(s_min * 0.9) > 1e-6 > alpha(s_min * 1.1)
    assert outside_distance(20.0, dt, 0.5) == 0.0  # soft density: no sample outside reaches 0.5


@pytest.mark.parametrize("inv_std", [1000.0, 200.0])
def test_skipping_certified_empty_groups_keeps_every_rendered_sample(inv_std):
    """Groups the SDF certifies as empty are only samples the exact pruning would drop: the render, the
    kept samples and the gradients are the same with and without the skip, which does drop many."""
    field = SphereField(centre=(0.0, 0.1, -0.05), radius=0.35, inv_std=inv_std)
    occ = OccupancyGrid()
    occ.build(field, generator=torch.Generator().manual_seed(0))
    origins, dirs = _sphere_view(32)
    rays, t = march_rays(origins, dirs, occ=occ)
    plan = skip_plan(field.sdf, origins, dirs, rays, t, DEFAULT_STEP, inv_std)
    with torch.no_grad():
        s = field.sdf(origins[rays] + dirs[rays] * t[:, None]).reshape(-1)
    assert (s[plan.empty] > outside_distance(inv_std, DEFAULT_STEP, 1e-6)).all()
    assert plan.empty.float().mean() > (0.25 if inv_std > 500 else 0.05)  # a softer density reaches farther
    # each ray's front ends inside the sphere (the group holding its first inside centre), and rays that
    # miss it are front all the way
    hit = torch.zeros(len(origins), dtype=torch.bool).index_fill_(0, rays[s < 0], True)
    assert plan.front[~hit[rays]].all() and (s[plan.front & hit[rays]] < 0).any()
    assert not plan.front[hit[rays]].all()  # the far side of the sphere is behind the fronts
    # the paper's initial density (inv_std 20, s_min 55 cm) reaches past the occupancy margin: nothing is
    # tried, even on the whole box's candidates, some of which could be certified
    rays_all, t_all = march_rays(origins, dirs)
    args = (field.sdf, origins, dirs, rays_all, t_all, DEFAULT_STEP, 20.0)
    assert skip_plan(*args) is None and skip_plan(*args, max_distance=10.0).empty.any()

    def run(skip_group):
        field.zero_grad(set_to_none=True)
        g = torch.Generator().manual_seed(3)
        out = render_view(
            field,
            camera_to_world(30.0, 10.0, 1.0),
            32,
            32,
            torch.ones(3),
            occ=occ,
            stratified=True,
            generator=g,
            skip_group=skip_group,
        )
        (out["rgb"].sum() + out["opacity"].square().sum()).backward()
        return out, field.radius.grad.clone()

    (a, grad_a), (b, grad_b) = run(8), run(0)
    assert torch.equal(a["sample_t"], b["sample_t"]) and torch.equal(
        a["sample_ray_indices"], b["sample_ray_indices"]
    )
    for key in ("rgb", "opacity", "depth"):
        torch.testing.assert_close(a[key], b[key], atol=0, rtol=0)
    torch.testing.assert_close(grad_a, grad_b)


class CountingField(SphereField):
    """A sphere that counts the points its SDF is evaluated at."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.evaluated = 0

    def sdf(self, x):
        self.evaluated += len(x)
        return super().sdf(x)


@pytest.mark.parametrize("inv_std", [1000.0, 60.0])
def test_pruning_the_fronts_first_keeps_what_evaluating_everything_keeps(inv_std):
    """Each ray's front is pruned first and the rest only for rays still transparent: the same mask as
    evaluating every candidate for any fronts, fewer evaluations with the fronts of the skip plan. The
    soft density (60) leaves rays transparent after a short front, so their rest is evaluated too."""
    field = CountingField(centre=(0.0, 0.1, -0.05), radius=0.35, inv_std=inv_std)
    origins, dirs = _sphere_view(32)
    rays, t = march_rays(origins, dirs)
    prune = lambda front: prune_candidates(field, origins, dirs, rays, t, DEFAULT_STEP, 0.01, 1e-4, front)  # noqa: E731
    everything = prune(None)
    assert everything.sum() > 100 and field.evaluated == len(t)
    first = torch.ones_like(rays, dtype=torch.bool)
    first[1:] = rays[1:] != rays[:-1]
    rank = torch.arange(len(rays)) - torch.nonzero(first).reshape(-1)[torch.cumsum(first, 0) - 1]
    for k in (0, 1, 5, 60, 10**6):
        field.evaluated = 0
        front = rank < k
        assert torch.equal(prune(front), everything)
        assert field.evaluated >= int(front.sum())
        if k == 5 and inv_std < 100:
            assert field.evaluated > int(front.sum())  # transparent rays went on past their front
    plan = skip_plan(field.sdf, origins, dirs, rays, t, DEFAULT_STEP, inv_std, max_distance=10.0)
    field.evaluated = 0
    assert torch.equal(prune(plan.front), everything)
    if inv_std > 500:  # opaque a sample after entering: nothing 3 groups past the entry is read
        with torch.no_grad():
            inside = SphereField.sdf(field, origins[rays] + dirs[rays] * t[:, None]).reshape(-1) < 0
        entry = torch.full((len(origins),), len(t)).scatter_reduce_(
            0, rays[inside], torch.nonzero(inside).reshape(-1), reduce="amin"
        )
        behind = int((torch.arange(len(t)) > entry[rays] + 24).sum())
        assert behind > 0.05 * len(t) and field.evaluated <= len(t) - behind


def test_the_skip_never_drops_what_a_lower_pruning_threshold_keeps():
    """The certificate follows ``alpha_thre``: with no alpha pruning at all nothing is skipped."""
    field = SphereField(centre=(0.0, 0.1, -0.05), radius=0.35, inv_std=1000.0)
    occ = OccupancyGrid()
    occ.build(field, generator=torch.Generator().manual_seed(0))
    c2w = camera_to_world(30.0, 10.0, 1.0)
    for thre in (0.0, 1e-8):
        with torch.no_grad():
            a = render_view(field, c2w, 16, 16, torch.ones(3), occ=occ, alpha_thre=thre, skip_group=8)
            b = render_view(field, c2w, 16, 16, torch.ones(3), occ=occ, alpha_thre=thre, skip_group=0)
        assert torch.equal(a["sample_t"], b["sample_t"]) and len(a["sample_t"]) > 0
