"""Pix3D voxel .mat files (MATLAB v5 through scipy, v7.3/HDF5 through h5py) and their .npy
conversion.

A Pix3D voxel file holds one variable, `voxel`, a (128, 128, 128) uint8 occupancy grid. MATLAB
stores arrays column-major; its HDF5 (v7.3) files therefore show the axes reversed, and
`read_voxel_mat` transposes them back so both versions give the same array as MATLAB shows. An
HDF5 file is MATLAB's when it has MATLAB's 512-byte header or its variable carries the
MATLAB_class attribute; any other HDF5 file (h5py's, for one) is read as stored.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recon.pipelines.common.errors import BadInput
from recon.pipelines.shapes import max_pool

VOXEL_KEY = "voxel"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
NPY_SIGNATURE = b"\x93NUMPY"


class MatError(Exception):
    """A .mat file that cannot be read as a voxel grid; the message names the problem."""


def is_v73(path: Path) -> bool:
    """True when the file is HDF5: MATLAB v7.3 (after its 512-byte header) or plain HDF5."""
    with Path(path).open("rb") as handle:
        head = handle.read(520)
    return head[512:520] == HDF5_SIGNATURE or head[:8] == HDF5_SIGNATURE


def _is_npy(path: Path) -> bool:
    with Path(path).open("rb") as handle:
        return handle.read(len(NPY_SIGNATURE)) == NPY_SIGNATURE


def _has_matlab_header(path: Path) -> bool:
    with Path(path).open("rb") as handle:
        return handle.read(10) == b"MATLAB 7.3"


def read_voxel_mat(path: Path, key: str = VOXEL_KEY) -> np.ndarray:
    """The 3D grid stored under key in a v5 or v7.3 .mat file, as MATLAB shows it; raises
    MatError for missing, truncated or non-3D content, and for a .npy (convert-mat's output is
    not read back)."""
    path = Path(path)
    if not path.is_file():
        raise MatError("no such file")
    if path.stat().st_size == 0:
        raise MatError("file is empty")
    try:
        if _is_npy(path):  # scipy's "Unknown mat file type, version 32, 32" said nothing
            raise MatError(
                "a voxel file must be a Pix3D .mat (got a NumPy .npy grid, as convert-mat "
                "writes; point `voxel` at the .mat)"
            )
        if _has_matlab_header(path) and not is_v73(path):  # scipy: "Please use HDF reader"
            raise MatError("a MATLAB v7.3 header without its HDF5 data: the file is cut short")
        array = _read_v73(path, key) if is_v73(path) else _read_v5(path, key)
    except MatError:
        raise
    except Exception as error:  # scipy/h5py raise many types for damaged files
        text = str(error).strip().splitlines()
        raise MatError(f"cannot read ({text[0] if text else type(error).__name__})") from error
    if array.ndim != 3:
        raise MatError(f"'{key}' has shape {array.shape}, expected a 3D grid")
    if len(set(array.shape)) != 1:
        raise MatError(f"'{key}' has shape {array.shape}, expected a cubic 3D grid")
    if array.dtype.kind not in "biuf":  # bool, integers, floats
        kinds = {"c": "complex", "V": "struct", "O": "cell or struct", "U": "text", "S": "text"}
        what = kinds.get(array.dtype.kind, array.dtype.name)
        if set(array.dtype.names or ()) == {"real", "imag"}:  # MATLAB's complex in HDF5
            what = "complex"
        raise MatError(f"'{key}' holds {what} values, expected an occupancy grid of numbers")
    if array.size == 0:
        raise MatError(f"'{key}' has shape {array.shape}: it holds no voxels")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise MatError(f"'{key}' holds NaN or Inf values, expected an occupancy grid")
    return array


def read_occupancy(path: Path) -> np.ndarray:
    """The bool grid a voxel .mat holds (read_voxel_mat, nonzero = occupied): what training
    reads, whatever the file's format (v5 or v7.3, compressed or not) or number type."""
    return read_voxel_mat(path) != 0


def _read_v5(path: Path, key: str) -> np.ndarray:
    from scipy.io import loadmat
    from scipy.sparse import issparse

    data = loadmat(path, variable_names=[key])
    if key not in data:
        raise MatError(f"no variable '{key}'")
    if issparse(data[key]):
        raise MatError(f"'{key}' is a sparse matrix (2D), expected a 3D grid")
    return np.asarray(data[key])


def _read_v73(path: Path, key: str) -> np.ndarray:
    import h5py

    with h5py.File(path, "r") as handle:
        if key not in handle:
            raise MatError(f"no variable '{key}'")
        variable = handle[key]
        if not isinstance(variable, h5py.Dataset):
            raise MatError(f"'{key}' is a group (a struct or cell), expected a 3D grid")
        array = np.asarray(variable[()])
        matlab = _has_matlab_header(path) or "MATLAB_class" in variable.attrs
    return array.transpose() if matlab else array


def write_voxel_mat(path: Path, grid: np.ndarray, version: str = "5", key: str = VOXEL_KEY):
    """Write grid (uint8) as a MATLAB v5 (scipy, compressed) or v7.3 (h5py) file."""
    grid = np.ascontiguousarray(grid, dtype=np.uint8)
    if version == "5":
        from scipy.io import savemat

        savemat(path, {key: grid}, do_compression=True, format="5")
    elif version == "7.3":
        _write_v73(Path(path), grid, key)
    else:
        raise ValueError(f"MATLAB version must be '5' or '7.3', not {version!r}")


def _write_v73(path: Path, grid: np.ndarray, key: str) -> None:
    import h5py

    with h5py.File(path, "w", userblock_size=512) as handle:
        dataset = handle.create_dataset(
            key, data=grid.transpose(), compression="gzip", compression_opts=4
        )
        dataset.attrs["MATLAB_class"] = np.bytes_("uint8")
    header = (
        "MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: "
        f"{time.strftime('%a %b %d %H:%M:%S %Y')} HDF5 schema 1.00 ."
    ).encode()
    block = header.ljust(116, b" ") + b"\0" * 8 + b"\x00\x02" + b"IM"
    with path.open("r+b") as handle:
        handle.write(block.ljust(512, b"\0"))


@dataclass
class ConvertReport:
    converted: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # source -> reason
    seconds: float = 0.0


def mat_sources(src: Path) -> tuple[Path, list[Path]]:
    """(root, files): a single .mat file or every .mat under a folder, sorted."""
    src = Path(src)
    if src.is_file():
        if src.suffix.lower() != ".mat":
            raise BadInput(f"{src}: not a .mat file")
        return src.parent, [src]
    if src.is_dir():
        files = sorted(p for p in src.rglob("*") if p.suffix.lower() == ".mat" and p.is_file())
        if not files:
            raise BadInput(f"{src}: no .mat files found")
        return src, files
    raise BadInput(f"{src}: no such file or folder")


def convert_one(source: str, target: str, resolution: int | None) -> str | None:
    """Convert one .mat to .npy: uint8 occupancy (1 where the grid is not 0, as training reads
    it, whatever the .mat's type); returns None on success, else the reason."""
    try:
        grid = read_voxel_mat(Path(source))
        if resolution is not None and resolution != grid.shape[0]:
            try:
                grid = max_pool(grid, resolution)
            except BadInput as error:
                return str(error)
        grid = (grid != 0).astype(np.uint8)  # occupancy, as training reads a grid
        target_path = Path(target)
        target_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = target_path.with_name(f".{target_path.name}.{os.getpid()}.tmp")
        try:
            with tmp.open("wb") as handle:
                np.save(handle, np.ascontiguousarray(grid))
            os.replace(tmp, target_path)
        finally:
            tmp.unlink(missing_ok=True)
        return None
    except MatError as error:
        return str(error)
    except OSError as error:
        return f"cannot write {target}: {error.strerror or error}"


def convert_tree(
    sources: list[Path],
    root: Path,
    dst: Path,
    resolution: int | None,
    workers: int,
    advance: Callable[[], None] = lambda: None,
) -> ConvertReport:
    """Convert each source to dst/<path relative to root>.npy, in `workers` processes.

    Two sources that would give one target (a.mat and a.MAT: one file where names ignore case)
    are refused before any work. Worker processes ignore Ctrl-C and are stopped when the caller
    is interrupted (Ctrl-C, SIGTERM) or fails, so none goes on writing after the command has
    ended; a worker that dies (killed, out of memory) ends the conversion with one line."""
    clock = time.perf_counter()
    report = ConvertReport()
    jobs = [
        (str(s), str(dst / s.relative_to(root).with_suffix(".npy")), resolution) for s in sources
    ]
    seen: dict[str, str] = {}
    for source, target, _ in jobs:
        other = seen.setdefault(target.lower(), source)
        if other != source:
            raise BadInput(f"{other} and {source} would both be written to one .npy file")
    if workers <= 1:
        for job in jobs:
            _record(report, job[0], convert_one(*job))
            advance()
    else:
        _convert_in_workers(jobs, workers, report, advance)
    report.seconds = time.perf_counter() - clock
    return report


def _convert_in_workers(jobs: list, workers: int, report: ConvertReport, advance) -> None:
    """convert_one of each job in a pool of worker processes, recorded in job order."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from recon.pipelines.common.errors import JobFailed

    pool = ProcessPoolExecutor(workers, initializer=_worker_signals)
    try:
        futures = [pool.submit(_convert_job, job) for job in jobs]
        for (source, _, _), future in zip(jobs, futures, strict=True):
            try:
                error = future.result()
            except BrokenProcessPool as broken:
                raise JobFailed(
                    f"a worker process ended unexpectedly (killed, or out of memory?) while "
                    f"converting; {len(report.converted) + len(report.failed)} of {len(jobs)} "
                    "files were done (try fewer --workers)"
                ) from broken
            _record(report, source, error)
            advance()
    finally:
        # stop work in progress first, by SIGKILL: a worker ended any other way (the pool's
        # shutdown sentinel, or SIGTERM before its initializer ran) runs the exit hooks it
        # inherited by fork, which wrote "Exception ignored ... Bad file descriptor" to stderr
        for worker in multiprocessing.active_children():
            worker.kill()
            worker.join()
        pool.shutdown(wait=True, cancel_futures=True)  # its manager thread ends too


def _convert_job(job: tuple[str, str, int | None]) -> str | None:
    return convert_one(*job)


def _worker_signals() -> None:
    """Workers leave interrupts to the main process, which stops them (SIGTERM kills them)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _record(report: ConvertReport, source: str, error: str | None) -> None:
    if error is None:
        report.converted.append(source)
    else:
        report.failed[source] = error
