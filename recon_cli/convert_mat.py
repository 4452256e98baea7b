"""`recon convert-mat`: Pix3D voxel .mat (MATLAB v5 and v7.3) -> .npy, file or tree."""

from pathlib import Path
from typing import Annotated

import typer

from recon.cli.common import (
    COMPUTE,
    Json,
    Overwrite,
    Quiet,
    Reporter,
    check_range,
    key_value_table,
)


def convert_mat(
    src: Annotated[Path, typer.Argument(help="A .mat file, or a folder searched recursively.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output .npy (for a file) or folder.")],
    resolution: Annotated[
        int | None,
        typer.Option(
            help="Max-pool each grid to this side, 1 to 1024 (e.g. 32); must divide the grid side."
        ),
    ] = None,
    keep_going: Annotated[
        bool,
        typer.Option(
            "--keep-going",
            help="Keep what converted when some files fail, and list the failures in "
            "OUT/convert-failures.log (default: a failure writes nothing).",
        ),
    ] = False,
    workers: Annotated[
        int,
        typer.Option(
            help="Parallel processes, 0 to 256 (0: CPU count, at most 8).",
            rich_help_panel=COMPUTE,
        ),
    ] = 0,
    overwrite: Overwrite = False,
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Convert Pix3D voxel .mat files (MATLAB v5 and v7.3) to .npy, keeping the folder layout.

    Reads the variable `voxel` and writes uint8 occupancy (1 where it is not 0). When a file of
    a folder fails the command exits 1 and writes nothing, unless --keep-going keeps the rest
    and lists the failures (tab-separated path and reason) in OUT/convert-failures.log; a
    single file given that cannot be read is bad input (exit 2). With --overwrite
    an existing folder is written into: same-named files are replaced, others kept (so a folder
    made with another --resolution is refused). The run's record is OUT/run.json, or for a
    single file OUT's name with .run.json (a.npy -> a.npy.run.json).

    Example: recon convert-mat pix3d/model -o voxels32 --resolution 32
    """
    import os

    from recon.pipelines.common.batch import check_same_settings
    from recon.pipelines.common.errors import BadInput
    from recon.pipelines.common.inputs import check_apart
    from recon.pipelines.common.outputs import (
        check_not_input,
        check_output,
        check_run_record,
        check_same_command,
        merged_dir,
        write_json,
    )
    from recon.pipelines.occupancy.matfiles import convert_tree, mat_sources

    ui = Reporter(json_out, quiet)
    check_range("--resolution", resolution, 1, 1024)
    check_range("--workers", workers, 0, 256)
    root, sources = mat_sources(src)
    single = Path(src).is_file()
    if single:
        out = check_output(out, overwrite, (".npy",), inputs=[src])
        sidecar = check_run_record(out, overwrite, inputs=[src])
    else:
        out = Path(out).expanduser().absolute()
        check_not_input(out, [src])
        check_apart(out, [], [src])  # never write the .npy tree among the data set's files
        if out.exists() and not out.is_dir():
            raise BadInput(f"{out}: exists and is not a folder")
        if out.is_dir() and any(out.iterdir()) and not overwrite:
            raise BadInput(f"{out}: folder is not empty (pass --overwrite to write into it)")
        if out.is_dir():
            check_same_command(out, "convert-mat")
            check_same_settings(  # files not replaced stay: one folder, one grid size
                out,
                "convert-mat",
                {"resolution": resolution},
                {"resolution": "--resolution"},
                advice="--overwrite writes into the folder and keeps the grids it does not "
                "replace (give the same --resolution, or remove the folder or use another -o)",
            )
    count = workers if workers > 0 else min(8, os.cpu_count() or 1)
    count = min(count, len(sources))
    config = {"resolution": resolution, "keep_going": keep_going, "workers": count}
    log = None
    with ui.progress("convert-mat", total=len(sources)) as bar:
        if single:
            report = _convert_single(sources[0], out, resolution)
            bar.advance()
            if report.failed:  # the one input is unreadable: bad input, as in every command
                raise BadInput(f"{sources[0]}: {report.failed[str(sources[0])]}")
            result = _result(report, out, None, count)
            write_json(sidecar, _record(config, report, result))  # last, beside the .npy
        else:
            with merged_dir(out) as folder:
                report = convert_tree(sources, root, folder, resolution, count, bar.advance)
                if report.failed and not keep_going:
                    raise _failure(report, len(sources), None)
                if report.failed:
                    log = out / "convert-failures.log"
                    (folder / log.name).write_text(
                        "".join(f"{path}\t{reason}\n" for path, reason in report.failed.items())
                    )
                result = _result(report, out, log, count)
                write_json(folder / "run.json", _record(config, report, result))
            if log is None:  # an earlier run's failure list no longer describes the folder
                (out / "convert-failures.log").unlink(missing_ok=True)
    rows = [
        ("converted", len(report.converted)),
        ("failed", len(report.failed)),
        ("files/s", result["files_per_s"]),
        ("out", out),
    ]
    if log:
        rows.append(("failure log", log))
    ui.result(result, key_value_table(f"convert-mat {src}", rows))
    if report.failed:
        raise _failure(report, len(sources), log)


def _result(report, out: Path, log: Path | None, workers: int) -> dict:
    """The --json result of a conversion."""
    total = len(report.converted) + len(report.failed)
    rate = total / report.seconds if report.seconds > 0 else 0.0
    return {
        "out": str(out),
        "converted": len(report.converted),
        "failed": len(report.failed),
        "failures": report.failed,
        "failure_log": str(log) if log else None,
        "seconds": round(report.seconds, 3),
        "files_per_s": round(rate, 2),
        "workers": workers,
    }


def _record(config: dict, report, result: dict) -> dict:
    """run.json of a conversion: its settings, time and counts."""
    from recon.pipelines.common.outputs import run_record

    metrics = {k: v for k, v in result.items() if k not in ("out", "seconds", "workers")}
    return run_record("convert-mat", None, config, {"convert": report.seconds}, metrics)


def _failure(report, total: int, log: Path | None):
    from recon.pipelines.common.errors import JobFailed

    first, reason = next(iter(report.failed.items()))
    where = f"; see {log}" if log else "; nothing written"
    if log is None and total > 1:
        where += " (--keep-going keeps the rest)"
    return JobFailed(
        f"{len(report.failed)} of {total} files failed (first: {first}: {reason}){where}"
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
