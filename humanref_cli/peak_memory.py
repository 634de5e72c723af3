"""Peak resident memory (RSS) of this process, recorded when a stage finishes.

The kernel keeps the process's peak (``VmHWM`` in ``/proc/self/status`` on Linux; ``getrusage``
elsewhere). It could be reset per stage (``/proc/self/clear_refs``), but that also resets what
``getrusage`` and ``/usr/bin/time`` report for the whole process, so it is left alone: a stage run on
its own (``humanref coarse ws/``) records its own peak, and a stage inside ``humanref run`` records the
peak of the run so far.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

_STATUS = Path("/proc/self/status")


def peak_rss_gib() -> float:
    """The process's peak RSS so far, in GiB."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**30 if sys.platform == "darwin" else peak / 2**20  # bytes on macOS, kB on Linux
