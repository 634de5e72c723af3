"""What every benchmark records about the machine it ran on, and how it reads the clock (imported by the
scripts in bench/)."""

from __future__ import annotations

import os
import platform


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``): results that
    depend on float kernels, such as the body fit, differ between CPUs (docs/decisions.md 4s)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """Platform, processor and its model, usable CPUs, torch version and threads, and the load average at
    the time (numbers taken while other jobs run are upper bounds)."""
    import torch

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "cpus": cpus,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def sync(device) -> None:
    """CUDA runs asynchronously: wait for it before reading the clock."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
