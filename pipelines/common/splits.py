"""Training/validation splits that hold whole source items out (3D models, parts, subjects):
files of the same content saved under different names are one item, so it never lands on both
sides. A task that reads arrays compares files by what its reader gives (the same grid saved
compressed or not, as MATLAB v5 or v7.3); otherwise array files (.npz, .mat) are compared by
their arrays, other files by their bytes: the same arrays saved again differ in a zip's or a
MAT header's time stamp."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import numpy as np

from recon.pipelines.common.batch import file_sha256

ARRAY_SUFFIXES = (".npz", ".mat")  # with a time stamp inside; a .npy's bytes are its arrays


def same_content(paths: list[Path], read: Callable[[Path], Any] | None = None) -> dict[str, str]:
    """{path: the first of the given files, by name, with the same content}: one 3D model saved
    under two names is one group, so a split cannot put it on both sides. read(path) gives the
    content as the task reads it (an array or {name: array}); with it, every file is compared
    by what it gives, whatever its format or size (a grid saved compressed and not, as MATLAB
    v5 and v7.3). Without it, files of one size are compared by content_digest. A file that
    cannot be read is its own group (its reader names the problem)."""
    unique = sorted({str(p) for p in paths})
    keys = _read_keys(unique, read) if read is not None else _size_keys(unique)
    first: dict[tuple, str] = {}
    return {path: first.setdefault(key, path) for path, key in keys.items()}


def _read_keys(paths: list[str], read: Callable[[Path], Any]) -> dict[str, tuple]:
    keys: dict[str, tuple] = {}
    for path in paths:
        try:
            content = read(Path(path))
        except Exception:  # noqa: BLE001 - the task's reader names the problem where it matters
            keys[path] = ("unread", path)
            continue
        keys[path] = (
            "read",
            arrays_digest(content if isinstance(content, dict) else {"": content}),
        )
    return keys


def _size_keys(paths: list[str]) -> dict[str, tuple]:
    sizes: dict[str, int | None] = {}
    for path in paths:
        try:
            sizes[path] = Path(path).stat().st_size
        except OSError:
            sizes[path] = None
    shared = Counter(size for size in sizes.values() if size is not None)
    keys: dict[str, tuple] = {}
    for path, size in sizes.items():
        keys[path] = (size, path)
        if size is not None and shared[size] > 1:
            with suppress(OSError):
                keys[path] = (size, content_digest(Path(path)))
    return keys


def content_digest(path: Path) -> str:
    """SHA-256 of an array file's arrays (names, dtypes, shapes and values: .npz, and .mat
    through scipy or h5py), else, or when none can be read, of the file's bytes."""
    suffix = path.suffix.lower()
    try:
        arrays = _arrays(path, suffix) if suffix in ARRAY_SUFFIXES else None
    except Exception:  # noqa: BLE001 - numpy, scipy and h5py raise many types
        arrays = None
    if not arrays:  # unreadable, or no array at the top (a MAT struct): the bytes decide
        return file_sha256(path)
    return "arrays:" + arrays_digest(arrays)


def arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 of {name: array}: names, dtypes, shapes and values."""
    import hashlib

    digest = hashlib.sha256()
    for name, array in sorted(arrays.items()):
        array = np.ascontiguousarray(array)
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _arrays(path: Path, suffix: str) -> dict[str, np.ndarray]:
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    import h5py

    if h5py.is_hdf5(path):  # MATLAB v7.3
        with h5py.File(path, "r") as data:
            return {
                name: np.asarray(item)
                for name, item in data.items()
                if isinstance(item, h5py.Dataset)
            }
    from scipy.io import loadmat

    return {k: np.asarray(v) for k, v in loadmat(path).items() if not k.startswith("__")}


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
