"""`recon check-data TASK ROOT`: validate a data set; exit 1 when problems were found."""

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.markup import escape

from recon.cli.common import Json, Quiet, Reporter, check_range


def check_data(
    task: Annotated[
        Literal["voxel", "parts", "skull"],
        typer.Argument(help="voxel (Pix3D layout), parts (image + STL) or skull (image + npz)."),
    ],
    root: Annotated[Path, typer.Argument(help="Data set root folder.")],
    limit: Annotated[
        int, typer.Option(help="Problems listed in the table, 0 to 100000 (all in --json).")
    ] = 50,
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Check a data set for TASK; prints per-class counts and problems, exit 1 on any problem.

    Finds missing or unreadable images, missing, truncated or all-zero voxel grids, broken
    meshes, shape mismatches, duplicates, paths escaping ROOT, and sets of one 3D model, part
    or subject (training holds whole ones out for validation); `recon train` refuses the same.

    Example: recon check-data voxel pix3d/
    """
    from rich.table import Table

    from recon.pipelines.common.errors import JobFailed
    from recon.pipelines.common.io import require_dir
    from recon.pipelines.occupancy.checks import check_parts, check_voxel

    ui = Reporter(json_out, quiet)
    check_range("--limit", limit, 0, 100_000)
    root = require_dir(root, "data set root")
    check = check_voxel if task == "voxel" else check_parts
    if task == "skull":
        from recon.pipelines.skull.data import check_skull as check
    report = check(root, ui.track)
    table = Table(title=f"check-data {task} {root}", title_justify="left")
    table.add_column("class")
    table.add_column("items", justify="right")
    for name, count in report.per_class.items():
        table.add_row(escape(name), str(count))
    rest = report.items - sum(report.per_class.values())  # skull: images without a usable grid
    if rest > 0:
        table.add_row("no usable grid" if task == "skull" else "other", str(rest))
    table.add_row("[bold]total", f"[bold]{report.items}")
    count = len(report.problems)
    problems = Table(title=f"{count} problem{'' if count == 1 else 's'}", title_justify="left")
    for column in ("kind", "path", "detail"):
        problems.add_column(column, overflow="fold")
    for problem in report.problems[:limit]:
        problems.add_row(problem.kind, escape(problem.path), escape(problem.detail))  # [0, 'a']
    if len(report.problems) > limit:
        problems.add_row("...", f"{len(report.problems) - limit} more (see --json)", "")
    ui.result(report.as_dict(), table)
    if report.problems and not json_out and not quiet:
        ui.out.print(problems)
    if report.problems:
        kinds = ", ".join(f"{k} x{v}" for k, v in report.kinds().items())
        count = len(report.problems)
        raise JobFailed(f"{root}: {count} problem{'' if count == 1 else 's'} ({kinds})")
    if not json_out:  # the JSON object says so (problem_count 0)
        ui.info("no problems found")
