"""Training/validation splits that hold whole source items out (3D models, parts, subjects):
byte-identical files saved under different names are one item, so it never lands on both sides."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

import numpy as np

from recon.pipelines.common.batch import file_sha256


def same_content(paths: list[Path]) -> dict[str, str]:
    """{path: the first of the given files, by name, with the same bytes}: one 3D model saved
    under two names is one group, so a split cannot put it on both sides. A file that cannot
    be read is its own group (its reader names the problem)."""
    unique = sorted({str(p) for p in paths})
    sizes: dict[str, int | None] = {}
    for path in unique:
        try:
            sizes[path] = Path(path).stat().st_size
        except OSError:
            sizes[path] = None
    shared = Counter(size for size in sizes.values() if size is not None)
    first: dict[tuple, str] = {}
    groups: dict[str, str] = {}
    for path, size in sizes.items():
        key: tuple = (size, path)
        if size is not None and shared[size] > 1:
            with suppress(OSError):
                key = (size, file_sha256(Path(path)))
        groups[path] = first.setdefault(key, path)
    return groups


def split_by_group(items: list, key: Callable, val_fraction: float, seed: int) -> tuple[list, list]:
    """Seeded split keeping every group (e.g. one 3D model) on one side; groups are drawn in
    their sorted order, items keep theirs."""
    groups = sorted({key(item) for item in items})
    order = np.random.default_rng(seed).permutation(len(groups))
    count = min(len(groups) - 1, max(1, round(len(groups) * val_fraction)))
    val_groups = {groups[i] for i in order[:count]}
    train = [i for i in items if key(i) not in val_groups]
    val = [i for i in items if key(i) in val_groups]
    return train, val
