"""``humanref status``: one row per stage (status, freshness, progress, time, peak memory, checkpoint)."""

from __future__ import annotations

import sys
from typing import Any

from humanref_cli.workspace import STAGES, UPSTREAM, Workspace, _pid_alive


def stage_table(ws: Workspace) -> dict[str, Any]:
    """Status of every stage. ``fresh`` means done, files intact, and every upstream stage fresh."""
    manifest = ws.load_manifest() if ws.exists() else {"stages": {}}
    rows = []
    fresh_so_far: dict[str, bool] = {}
    for stage in STAGES:
        rec = manifest["stages"].get(stage)
        up = UPSTREAM[stage]
        if rec is None:
            rows.append(
                {
                    "stage": stage,
                    "status": "not run",
                    "fresh": False,
                    "reason": "not run",
                    "step": None,
                    "steps": None,
                    "seconds": None,
                    "peak_rss_gib": None,
                    "checkpoint": None,
                }
            )
            fresh_so_far[stage] = False
            continue
        status = rec.get("status", "unknown")
        if status == "running" and not _pid_alive(int(rec.get("pid", -1))):
            status = "interrupted"  # the process that was running it died
        ok, reason = ws.integrity(stage) if status == "done" else (False, status)
        if ok and up is not None and not fresh_so_far.get(up, False):
            ok, reason = False, f"upstream {up} is not fresh"
        ckpt = ws.stage_dir(stage) / "ckpt" / "last.pt"
        rows.append(
            {
                "stage": stage,
                "status": status,
                "fresh": ok,
                "reason": reason,
                "step": rec.get("step"),
                "steps": rec.get("steps"),
                "seconds": rec.get("seconds"),
                "peak_rss_gib": rec.get("peak_rss_gib"),
                "checkpoint": ws.rel(ckpt) if ckpt.exists() else None,
                "error": rec.get("error"),
            }
        )
        fresh_so_far[stage] = ok
    return {"workspace": str(ws.root), "exists": ws.exists(), "stages": rows}


def print_table(table: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"humanref workspace {table['workspace']}", title_justify="left")
    for col in ("stage", "status", "fresh", "step", "time", "peak RSS", "checkpoint"):
        t.add_column(col)
    for r in table["stages"]:
        fresh = "fresh" if r["fresh"] else ("stale" if r["status"] == "done" else "-")
        if r["status"] == "done" and not r["fresh"]:
            fresh = f"stale ({r['reason']})"
        step = f"{r['step']}/{r['steps']}" if r.get("steps") else "-"
        secs = f"{r['seconds']:.1f}s" if r.get("seconds") is not None else "-"
        rss = f"{r['peak_rss_gib']:.2f} GiB" if r.get("peak_rss_gib") is not None else "-"
        t.add_row(r["stage"], r["status"], fresh, step, secs, rss, r.get("checkpoint") or "-")
    Console(file=sys.stdout, width=120).print(t)
