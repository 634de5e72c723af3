"""Hash grid: against a slow obvious reference, layout, float64 gradcheck, tcnn cross-check (GPU)."""

from __future__ import annotations

import itertools

import pytest
import torch

from humanref_cli.geometry.hashgrid import HashGrid, HashGridConfig, level_layout

# 6 levels, scale_l = 5 * 1.5^l - 1 -> res = ceil(scale) + 1 = 5, 8, 12, 17, 26, 38: the first two
# are dense (125 -> 128 and 512 entries), 12^3 = 1728 > 1024 and finer levels are hashed.
SMALL = HashGridConfig(n_levels=6, n_features=2, log2_table=10, base_res=5, per_level_scale=1.5)


def naive_encode(grid: HashGrid, x: torch.Tensor, n_levels: int | None = None) -> torch.Tensor:
    """Slow, obvious hash-grid encoding: a Python loop over levels and the 8 corners.

    Reads the tiny-cuda-nn rules straight from the layout: position ``s x + 0.5``, dense index
    ``i + j res + k res^2`` (mod level size), hash ``xor_d (g_d * prime_d mod 2^32)`` mod size.
    """
    primes = (1, 2654435761, 805459861)
    n_levels = grid.cfg.n_levels if n_levels is None else n_levels
    table = grid.params
    x = x.to(table.dtype).clamp(0, 1)
    out = []
    for lv in grid.levels[:n_levels]:
        pos = x * lv["scale"] + 0.5
        base = torch.floor(pos)
        frac = pos - base
        base = base.long()
        acc = torch.zeros(len(x), grid.cfg.n_features, dtype=table.dtype, device=x.device)
        for corner in itertools.product((0, 1), repeat=3):
            g = [base[:, d] + corner[d] for d in range(3)]
            if lv["dense"]:
                index = g[0] + g[1] * lv["res"] + g[2] * lv["res"] ** 2
            else:
                index = torch.zeros_like(g[0])
                for d in range(3):
                    index = index ^ ((g[d] * primes[d]) & 0xFFFFFFFF)
            index = index % lv["size"] + lv["offset"]
            weight = torch.ones(len(x), dtype=table.dtype, device=x.device)
            for d in range(3):
                weight = weight * (frac[:, d] if corner[d] else 1 - frac[:, d])
            acc = acc + weight[:, None] * table[index]
        out.append(acc)
    return torch.cat(out, dim=1)


def make_grid(cfg=SMALL, dtype=torch.float32, seed=0) -> HashGrid:
    torch.manual_seed(seed)
    grid = HashGrid(cfg, backend="torch").to(dtype)
    with torch.no_grad():
        grid.params.uniform_(-1, 1)  # large values so that any indexing mistake shows
    return grid


def test_layout_dense_then_hashed():
    levels = level_layout(SMALL)
    assert [lv["res"] for lv in levels] == [5, 8, 12, 17, 26, 38]
    assert [lv["dense"] for lv in levels] == [True, True, False, False, False, False]
    assert [lv["size"] for lv in levels] == [128, 512, 1024, 1024, 1024, 1024]
    assert levels[3]["offset"] == 128 + 512 + 1024
    # released config: levels 0-4 dense, 5-15 hashed, finest resolution 4096 (tcnn's 6,299,960 entries)
    full = level_layout(HashGridConfig())
    assert sum(lv["dense"] for lv in full) == 5 and full[-1]["res"] == 4096
    assert full[-1]["offset"] + full[-1]["size"] == 6299960


def test_dense_levels_are_collision_free():
    grid = make_grid()
    lv = grid.levels[1]
    r = lv["res"]
    g = torch.stack(torch.meshgrid(*[torch.arange(r)] * 3, indexing="ij"), -1).reshape(-1, 3)
    index = grid._corner_indices(g[None].expand(2, -1, -1), 2)[1, :, 0]  # lower corner at level 1
    expected = g[:, 0] + g[:, 1] * r + g[:, 2] * r * r + lv["offset"]
    assert torch.equal(index, expected)
    assert index.unique().numel() == r**3


def test_hash_index_matches_hand_computation():
    grid = make_grid()
    lv = grid.levels[4]
    g = torch.tensor([[7, 3, 11]])
    h = (7 * 1) ^ (3 * 2654435761 % 2**32) ^ (11 * 805459861 % 2**32)
    index = grid._corner_indices(g[None].expand(5, -1, -1), 5)
    assert int(index[4, 0, 0]) == h % lv["size"] + lv["offset"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_equals_naive_reference(dtype):
    grid = make_grid(dtype=dtype)
    torch.manual_seed(1)
    x = torch.cat([torch.rand(500, 3), torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.5]])])
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(grid(x), naive_encode(grid, x), atol=tol, rtol=0)
    torch.testing.assert_close(grid(x, n_levels=3), naive_encode(grid, x, 3), atol=tol, rtol=0)


def test_gradients_equal_naive_reference():
    grid = make_grid(dtype=torch.float64)
    x = torch.rand(300, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(300, SMALL.n_levels * SMALL.n_features, dtype=torch.float64)
    gp, gx = torch.autograd.grad((grid(x) * w).sum(), [grid.params, x])
    rp, rx = torch.autograd.grad((naive_encode(grid, x) * w).sum(), [grid.params, x])
    torch.testing.assert_close(gp, rp, atol=1e-12, rtol=0)
    torch.testing.assert_close(gx, rx, atol=1e-9, rtol=1e-9)


def test_gradcheck_float64():
    cfg = HashGridConfig(n_levels=3, n_features=2, log2_table=6, base_res=3, per_level_scale=2.0)
    grid = make_grid(cfg, dtype=torch.float64)
    torch.manual_seed(3)
    x = (torch.rand(12, 3, dtype=torch.float64) * 0.9 + 0.05).requires_grad_(True)
    params = grid.params.detach().clone().requires_grad_(True)

    def encode(table, points):
        return torch.func.functional_call(grid, {"params": table}, (points,))

    assert torch.autograd.gradcheck(encode, (params, x), eps=1e-6, atol=1e-7)


def test_init_range_and_clamp():
    grid = HashGrid(SMALL, backend="torch")
    assert grid.params.abs().max() <= 1e-4 and grid.params.abs().max() > 0
    assert grid.n_output_dims == 12
    g = make_grid()
    x = torch.tensor([[-0.5, 1.5, 0.5]])
    torch.testing.assert_close(g(x), g(torch.tensor([[0.0, 1.0, 0.5]])))


def test_backend_torch_on_cpu_and_bad_backend():
    assert not HashGrid(SMALL, backend="auto").use_tcnn()
    with pytest.raises(ValueError):
        HashGrid(SMALL, backend="cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_tcnn_matches_torch():
    pytest.importorskip("tinycudann")
    grid = make_grid(HashGridConfig()).cuda()
    with torch.no_grad():
        grid.params.mul_(1e-2)
    x = torch.rand(4096, 3, device="cuda")
    w = torch.randn(4096, grid.n_output_dims, device="cuda")
    grid.backend = "tcnn"
    out_tcnn = grid(x)
    (g_tcnn,) = torch.autograd.grad((out_tcnn * w).sum(), [grid.params])
    grid.backend = "torch"
    out_torch = grid(x)
    (g_torch,) = torch.autograd.grad((out_torch * w).sum(), [grid.params])
    torch.testing.assert_close(out_tcnn, out_torch, atol=1e-4, rtol=1e-3)
    torch.testing.assert_close(g_tcnn, g_torch, atol=1e-3, rtol=1e-2)
