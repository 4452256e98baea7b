"""Safe outputs: refuse to clobber, write beside the target, rename into place, record run.json."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from recon.pipelines.common.errors import BadInput


def check_output(path: Path, overwrite: bool, suffixes: tuple[str, ...] | None = None) -> Path:
    """Validate an output path before any work starts; returns it as an absolute Path."""
    path = Path(path).expanduser().absolute()
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise BadInput(f"{path}: output must end in one of {', '.join(suffixes)}")
    if path.exists() and not overwrite:
        raise BadInput(f"{path}: already exists (pass --overwrite to replace it)")
    if not path.parent.exists():
        raise BadInput(f"{path.parent}: output folder does not exist")
    return path


@contextlib.contextmanager
def atomic_file(target: Path) -> Iterator[Path]:
    """Yield a temporary path with the target's suffix; on success it replaces the target."""
    target = Path(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a fresh temporary folder beside target; on success it takes the target's place."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        if target.is_dir():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
            os.replace(target, old / "x")
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            if target.exists():
                target.unlink()
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (indent 2, keys in insertion order)."""
    with atomic_file(Path(path)) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def run_record(command: str, seed: int | None, config: dict, timings: dict, metrics: dict) -> dict:
    """The content of run.json: what ran, with which settings, how long, with which result."""
    from recon import __version__

    return {
        "command": command,
        "argv": sys.argv,
        "version": __version__,
        "seed": seed,
        "config": config,
        "timings_s": {k: round(v, 4) for k, v in timings.items()},
        "metrics": metrics,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
