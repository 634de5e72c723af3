"""Peak resident memory (RSS) of this process, measured per stage.

On Linux the kernel keeps the peak (``VmHWM`` in ``/proc/self/status``) and resets it when ``5`` is
written to ``/proc/self/clear_refs``, so each stage of one ``humanref run`` gets its own peak.
Elsewhere only the process's lifetime peak exists (``getrusage``), which a stage then shares with
every stage before it in the same process.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def reset_peak_rss() -> bool:
    """Start a new peak from the current RSS; False where the platform cannot (the peak then runs on)."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def peak_rss_gib() -> float:
    """The peak RSS in GiB since the last successful :func:`reset_peak_rss` (else since start-up)."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**30 if sys.platform == "darwin" else peak / 2**20  # bytes on macOS, kB on Linux
