"""`recon convert-mat`: Pix3D voxel .mat (MATLAB v5 and v7.3) -> .npy, file or tree."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recon.cli.common import COMPUTE, Json, Overwrite, Quiet, Reporter, key_value_table


def convert_mat(
    src: Annotated[Path, typer.Argument(help="A .mat file, or a folder searched recursively.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output .npy (for a file) or folder.")],
    resolution: Annotated[
        int | None,
        typer.Option(help="Max-pool each grid to this side (e.g. 32); must divide the grid side."),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            help="Parallel processes (default: CPU count, at most 8).", rich_help_panel=COMPUTE
        ),
    ] = 0,
    overwrite: Overwrite = False,
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Convert Pix3D voxel .mat files (MATLAB v5 and v7.3) to .npy, keeping the folder layout.

    Reads the variable `voxel` and writes uint8. Files that fail are listed in
    OUT/convert-failures.log (tab-separated path and reason) and the command exits 1.

    Example: recon convert-mat pix3d/model -o voxels32 --resolution 32
    """
    import os

    from recon.pipelines.common.errors import BadInput, JobFailed
    from recon.pipelines.common.outputs import check_output
    from recon.pipelines.occupancy.matfiles import convert_tree, mat_sources

    ui = Reporter(json_out, quiet)
    if resolution is not None and resolution < 1:
        raise BadInput(f"--resolution must be positive, not {resolution}")
    root, sources = mat_sources(src)
    single = Path(src).is_file()
    if single:
        out = check_output(out, overwrite, (".npy",))
    else:
        out = Path(out).expanduser().absolute()
        if out.exists() and not out.is_dir():
            raise BadInput(f"{out}: exists and is not a folder")
        if out.is_dir() and any(out.iterdir()) and not overwrite:
            raise BadInput(f"{out}: folder is not empty (pass --overwrite to write into it)")
    count = workers if workers > 0 else min(8, os.cpu_count() or 1)
    count = min(count, len(sources))
    with ui.progress("convert-mat", total=len(sources)) as bar:
        if single:
            report = _convert_single(sources[0], out, resolution)
            bar.advance()
        else:
            report = convert_tree(sources, root, out, resolution, count, bar.advance)
    log = None
    if report.failed and not single:
        log = out / "convert-failures.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("".join(f"{path}\t{reason}\n" for path, reason in report.failed.items()))
    rate = len(sources) / report.seconds if report.seconds > 0 else 0.0
    result = {
        "out": str(out),
        "converted": len(report.converted),
        "failed": len(report.failed),
        "failures": report.failed,
        "failure_log": str(log) if log else None,
        "seconds": round(report.seconds, 3),
        "files_per_s": round(rate, 2),
        "workers": count,
    }
    rows = [
        ("converted", len(report.converted)),
        ("failed", len(report.failed)),
        ("files/s", rate),
        ("out", out),
    ]
    if log:
        rows.append(("failure log", log))
    ui.result(result, key_value_table(f"convert-mat {src}", rows))
    if report.failed:
        first, reason = next(iter(report.failed.items()))
        where = f"; see {log}" if log else ""
        raise JobFailed(
            f"{len(report.failed)} of {len(sources)} files failed (first: {first}: {reason}){where}"
        )


def _convert_single(source: Path, out: Path, resolution: int | None):
    import time

    from recon.pipelines.occupancy.matfiles import ConvertReport, convert_one

    clock = time.perf_counter()
    report = ConvertReport()
    error = convert_one(str(source), str(out), resolution)
    if error is None:
        report.converted.append(str(source))
    else:
        report.failed[str(source)] = error
    report.seconds = time.perf_counter() - clock
    return report
