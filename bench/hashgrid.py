"""Hash-grid throughput: points/s for forward + backward, vectorised torch backend vs the naive reference.

The naive reference (``tests/test_hashgrid.py::naive_encode``: a Python loop over levels and corners)
runs in the same process on the same points. Released config (16 levels x 2 features, 2^19 table).
Prints a table and writes ``bench/results/hashgrid.json``.

    .venv/bin/python bench/hashgrid.py [--sizes 65536 262144] [--repeats 3] [--device cuda --out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine_info import machine_info, sync  # noqa: E402  (bench/ is sys.path[0] when run as a script)

from humanref_cli.geometry.hashgrid import HashGrid, HashGridConfig  # noqa: E402
from tests.test_hashgrid import naive_encode  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "hashgrid.json"


def time_fwd_bwd(encode, grid: HashGrid, x: torch.Tensor, repeats: int) -> float:
    """Best wall time (s) of encode + a weighted-sum loss + backward to the table."""
    w = torch.randn(len(x), grid.n_output_dims, device=x.device)
    best = float("inf")
    for _ in range(repeats):
        grid.params.grad = None
        sync(x.device)
        start = time.perf_counter()
        (encode(x) * w).sum().backward()
        sync(x.device)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[65536, 262144])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    grid = HashGrid(HashGridConfig(), backend="torch").to(device)
    if device.type == "cuda":  # the first call pays CUDA's start-up; keep it out of the table
        time_fwd_bwd(grid, grid, torch.rand(1024, 3, device=device), 1)
    rows = []
    for n in args.sizes:
        x = torch.rand(n, 3).to(device)
        fast = time_fwd_bwd(grid, grid, x, args.repeats)
        naive = time_fwd_bwd(lambda p: naive_encode(grid, p), grid, x, max(1, args.repeats - 1))
        with torch.no_grad():
            sync(device)
            start = time.perf_counter()
            grid(x, n_levels=8)
            sync(device)
            fwd8 = time.perf_counter() - start
        rows.append(
            {
                "points": n,
                "torch_s": fast,
                "naive_s": naive,
                "torch_pts_per_s": n / fast,
                "naive_pts_per_s": n / naive,
                "speedup": naive / fast,
                "forward_8_levels_s": fwd8,
            }
        )
    print(
        f"{'points':>8} {'torch s':>8} {'naive s':>8} {'torch pts/s':>12} {'naive pts/s':>12} {'speedup':>8}"
    )
    for r in rows:
        print(
            f"{r['points']:>8} {r['torch_s']:>8.3f} {r['naive_s']:>8.3f} {r['torch_pts_per_s']:>12.0f} "
            f"{r['naive_pts_per_s']:>12.0f} {r['speedup']:>8.2f}"
        )
    meta = {**machine_info(), "device": str(device)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"meta": meta, "config": HashGridConfig().to_dict(), "rows": rows}, indent=2)
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
