"""Runtime policy built once per command: device, seeding, messages, progress, logs, Ctrl-C.

Messages and progress go to stderr (results go to stdout, from the CLI). Each stage also appends its
messages to ``ws/logs/<stage>.log``. Inside :meth:`Runtime.interruptible`, the first Ctrl-C only sets
``rt.interrupted`` so the loop can write a checkpoint and stop cleanly; a second one raises at once.
"""

from __future__ import annotations

import contextlib
import random
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from rich.console import Console

from humanref_cli.errors import UsageError


def check_device_name(name: str) -> str:
    """``name`` if it is a ``--device`` value (``auto``, ``cpu``, ``cuda``, ``cuda:N``); else a UsageError."""
    if name not in ("auto", "cpu", "cuda") and not name.startswith("cuda:"):
        raise UsageError(f"unknown device {name!r}", hint="use auto, cpu or cuda")
    return name


def resolve_device(name: str):
    """``auto`` -> CUDA when available, else CPU. Asking for ``cuda`` without one is a usage error."""
    import torch

    if check_device_name(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError(
            "--device cuda was asked for but no CUDA device is available", hint="use --device cpu"
        )
    return torch.device(name)


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


@dataclass
class Runtime:
    device_name: str = "auto"
    seed: int = 0
    quiet: bool = False
    console: Console = field(default_factory=lambda: Console(stderr=True, highlight=False))
    interrupted: bool = False
    _device: Any = None
    _log: IO[str] | None = None

    @property
    def device(self):
        if self._device is None:
            self._device = resolve_device(self.device_name)
        return self._device

    def seed_everything(self, offset: int = 0) -> None:
        seed_everything(self.seed + offset)

    # ------------------------------------------------------------------ messages
    def _write_log(self, level: str, msg: str) -> None:
        if self._log is not None:
            self._log.write(f"{datetime.now().isoformat(timespec='seconds')} {level} {msg}\n")
            self._log.flush()

    def info(self, msg: str) -> None:
        self._write_log("INFO", msg)
        if not self.quiet:
            self.console.print(msg, markup=False)

    def warn(self, msg: str) -> None:
        self._write_log("WARN", msg)
        self.console.print(f"warning: {msg}", style="yellow", markup=False)

    def open_log(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.close_log()
        self._log = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close_log

    def close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    # ------------------------------------------------------------------ Ctrl-C
    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """First SIGINT sets ``self.interrupted`` (loop checkpoints and raises); a second aborts."""
        self.interrupted = False

        def handler(signum, frame):
            if self.interrupted:
                raise KeyboardInterrupt
            self.interrupted = True
            self.console.print(
                "\ninterrupt: finishing the step and writing a checkpoint (Ctrl-C again to abort)"
            )

        try:
            previous = signal.signal(signal.SIGINT, handler)
        except ValueError:  # not the main thread: keep the default behaviour
            yield
            return
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    # ------------------------------------------------------------------ progress
    def progress(self, total: int, description: str, start: int = 0) -> Progress:
        return Progress(self, total, description, start)


class Progress:
    """Progress with ETA: a rich bar on a terminal, plain lines (every ~10% or 30 s) otherwise."""

    def __init__(self, rt: Runtime, total: int, description: str, start: int = 0):
        self.rt, self.total, self.description = rt, max(int(total), 1), description
        self.start_step = start
        self.t0 = time.monotonic()
        self._last_line = 0.0
        self._last_pct = -1
        self._bar = None
        self._task = None

    def __enter__(self) -> Progress:
        if not self.rt.quiet and self.rt.console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[scalars]}"),
                console=self.rt.console,
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(
                self.description, total=self.total, completed=self.start_step, scalars=""
            )
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()

    def eta_seconds(self, step: int) -> float | None:
        done = step - self.start_step
        if done <= 0:
            return None
        return (time.monotonic() - self.t0) / done * (self.total - step)

    def update(self, step: int, **scalars: float) -> None:
        text = " ".join(f"{k}={v:.4g}" for k, v in scalars.items())
        if self._bar is not None:
            self._bar.update(self._task, completed=step, scalars=text)
            return
        pct = int(100 * step / self.total)
        now = time.monotonic()
        if step < self.total and pct // 10 == self._last_pct // 10 and now - self._last_line < 30:
            return
        self._last_pct, self._last_line = pct, now
        eta = self.eta_seconds(step)
        eta_text = f" eta {eta:.0f}s" if eta is not None else ""
        line = f"{self.description}: {step}/{self.total} ({pct}%){eta_text} {text}".rstrip()
        self.rt._write_log("INFO", line)
        if not self.rt.quiet:
            print(line, file=sys.stderr, flush=True)
