"""Memory figures from /proc, shared by the scripts that measure each side in a process of its
own."""

from __future__ import annotations

from pathlib import Path


def _proc_gb(path: str, key: str) -> float:
    """The `key:` line of a /proc file (kB), in GB."""
    for line in Path(path).read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 2**20
    raise RuntimeError(f"no {key} in {path} (Linux only)")


def peak_gb() -> float:
    """This process's peak resident memory, GB: VmHWM, where ru_maxrss would carry the parent's
    peak over fork and exec."""
    return _proc_gb("/proc/self/status", "VmHWM")


def available_gb() -> float:
    """Memory a new allocation can have without swapping, GB (the kernel's MemAvailable)."""
    return _proc_gb("/proc/meminfo", "MemAvailable")
