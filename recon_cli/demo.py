"""`recon demo`: run every pipeline on built-in data and print a summary table."""

from pathlib import Path
from typing import Annotated

import typer

from recon.cli.common import Json, Overwrite, Quiet, Reporter, Seed

# The steps of recon.pipelines.common.demo.STEPS, in order, named here so that --help does not
# import them (a test checks that the two lists agree).
STEP_NAMES = ("geometry", "drr", "corset", "voxel", "register", "skull")


def demo(
    out: Annotated[
        Path | None,
        typer.Option("-o", "--out", help="Keep the demo's files here (default: a temp folder)."),
    ] = None,
    only: Annotated[
        str | None,
        typer.Option(help=f"Run only these steps (comma-separated): {', '.join(STEP_NAMES)}."),
    ] = None,
    seed: Seed = 0,
    overwrite: Overwrite = False,
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Run every pipeline end to end on built-in data and score each against its truth.

    Exits 1 when a step misses its target.

    Example: recon demo -o demo_run
    """
    import tempfile
    import time

    from rich.table import Table

    from recon.pipelines.common.errors import BadInput, JobFailed
    from recon.pipelines.common.outputs import atomic_dir, check_output, run_record, write_json

    ui = Reporter(json_out, quiet)
    wanted = None  # every step
    if only is not None:  # checked before the steps' modules load (seconds)
        wanted = {s.strip() for s in only.split(",")} - {""}
        unknown = wanted - set(STEP_NAMES)
        if unknown or not wanted:
            problem = f"unknown step {', '.join(sorted(unknown))}" if unknown else "no step named"
            raise BadInput(f"--only: {problem}; steps are {', '.join(STEP_NAMES)}")
    if out is not None:
        out = check_output(out, overwrite, command="demo")
    from recon.pipelines.common.demo import STEPS

    steps = [(name, fn) for name, fn in STEPS if wanted is None or name in wanted]
    rows, timings = [], {}
    with tempfile.TemporaryDirectory(prefix="recon-demo-") as scratch:
        target = Path(scratch) / "demo" if out is None else out
        with atomic_dir(target) as workdir:
            for name, step in steps:
                ui.info(f"[bold]demo[/bold] {name}")
                clock = time.perf_counter()
                step_dir = workdir / name
                step_dir.mkdir()
                rows += step(step_dir, seed, ui.track)
                timings[name] = time.perf_counter() - clock
            metrics = [vars(r) for r in rows]
            write_json(workdir / "run.json", run_record("demo", seed, {}, timings, metrics))

    table = Table(title="recon demo", title_justify="left")
    for column in ("step", "metric", "value", "target", "ok"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            r.step,
            r.metric,
            f"{r.value:.4g}",
            r.target,
            {True: "[green]yes[/green]", False: "[red]NO[/red]", None: "-"}[r.ok],
        )
    passed = all(r.ok is not False for r in rows)
    ui.result(
        {"passed": passed, "rows": metrics, "timings_s": timings, "out": str(out) if out else None},
        table,
    )
    if not json_out and not quiet:
        ui.info(" ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
    if not passed:
        raise JobFailed("demo: a step missed its target (see the table)")
