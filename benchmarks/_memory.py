"""Peak memory of a benchmark's own process, shared by the scripts that measure each side in a
process of its own."""

from __future__ import annotations

from pathlib import Path


def peak_gb() -> float:
    """This process's peak resident memory, GB: VmHWM, where ru_maxrss would carry the parent's
    peak over fork and exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20  # kB
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")
