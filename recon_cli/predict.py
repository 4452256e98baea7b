"""`recon predict TASK`: the sub-app; each task's command lives in its pipeline's CLI module."""

import typer

from recon.cli.common import CHANGED_ROW, ReconGroup

app = typer.Typer(cls=ReconGroup, help="Run a trained model on new inputs.", no_args_is_help=True)


def add_skipped_row(table, plan) -> None:
    """With --skip-done, end a predict command's per-input table (rich Table) with the row
    `skipped (done): N` (N the inputs kept as done), as `synth` and `make-drr` count them, and
    `made again (input changed): N` when inputs changed since their outputs were made."""
    if plan.skip_done:  # the counts beside their names: the table's columns are per input
        table.add_section()
        blank = [""] * (len(table.columns) - 1)
        table.add_row(f"skipped (done): {len(plan.done)}", *blank)
        if plan.changed:
            table.add_row(f"{CHANGED_ROW}: {len(plan.changed)}", *blank)
