"""The `recon` command: a Typer app whose commands are thin layers over recon.pipelines."""

import errno
import os
import signal
import sys
import threading

from recon.pipelines.common.ranks import launched_as_rank_zero


def remove_temporaries() -> None:
    """outputs.remove_temporaries, when the outputs module was loaded: a command that never
    loaded it made no temporary (and --help need not import it)."""
    outputs = sys.modules.get("recon.pipelines.common.outputs")
    if outputs is not None:
        outputs.remove_temporaries()


def prints_json_errors(args: list[str]) -> bool:
    """Whether this process prints a failure's JSON object with --json: every process, but in
    a multi-process training run (DDP, srun) only global rank 0 (launched_as_rank_zero), so the
    run gives one object. Other commands' processes are separate runs (shards under srun), each
    with its own."""
    command = next((arg for arg in args if not arg.startswith("-")), "")
    return command != "train" or launched_as_rank_zero()


def _stopped_while_starting(signum, _frame) -> None:
    """Ctrl-C or SIGTERM while this module imports (nothing is written yet, and main's handlers
    are not set): the command's one line, its exit code and, with --json, the JSON error."""
    code, line = (143, "terminated") if signum == signal.SIGTERM else (130, "interrupted")
    message = "terminated (SIGTERM)" if code == 143 else "interrupted"
    os.write(2, f"{line}\n".encode())
    args = sys.argv[1:]
    args = args[: args.index("--")] if "--" in args else args
    if "--json" in args and prints_json_errors(args):  # as main: one JSON object per run
        os.write(1, f'{{"error": "{message}", "exit_code": {code}}}\n'.encode())
    os._exit(code)


# set for the imports below only (main sets its own); the originals come back after them
_STARTUP_HANDLERS = {
    number: signal.signal(number, _stopped_while_starting)
    for number in (signal.SIGINT, signal.SIGTERM)
    if threading.current_thread() is threading.main_thread()
    and signal.getsignal(number) in (signal.SIG_DFL, signal.default_int_handler)
}

import typer  # noqa: E402 - after the start-up handlers

from recon import __version__  # noqa: E402
from recon.cli.commands import COMMANDS, LazyGroup  # noqa: E402, F401 - tests read COMMANDS
from recon.pipelines.common.errors import FULL_DISK, ReconError  # noqa: E402

for _number, _original in _STARTUP_HANDLERS.items():
    signal.signal(_number, _original)

app = typer.Typer(
    name="recon",
    cls=LazyGroup,
    help="2D images to 3D shapes, and X-ray to CT registration.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"recon {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """2D images to 3D shapes, and X-ray to CT registration."""


def main(argv: list[str] | None = None) -> None:
    """Entry point: runs the app, turning known errors into one line on stderr and an exit code.

    Exit codes: 0 success, 1 the job failed its purpose or an unforeseen error, 2 bad usage or
    input, 130 Ctrl-C, 143 SIGTERM (a batch scheduler's stop: handled like Ctrl-C, temporaries
    removed). Usage errors (an unknown option, a missing argument, a value of the wrong type or
    not among an option's choices) are one line too, naming the option and the command's --help.
    With --json a failure also prints {"error": ..., "exit_code": ...} on stdout unless the
    command printed its own JSON result. Library warnings users cannot act on are hidden.
    """
    import json
    import signal
    import threading
    import warnings

    from recon.pipelines.common.stops import STOP_NOTES, STOPS_RECEIVED, UNSEEN_STOPS

    if sys.stderr is None:  # started with stderr closed (`2>&-`): messages go nowhere, not crash
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    debug = bool(os.environ.get("RECON_DEBUG"))
    args = list(sys.argv[1:] if argv is None else argv)
    json_out = "--json" in args[: args.index("--")] if "--" in args else "--json" in args
    terminated: list[int] = []
    interrupted: list[int] = []
    json_errors = prints_json_errors(args)

    UNSEEN_STOPS.clear()
    STOPS_RECEIVED.clear()
    STOP_NOTES.clear()

    def on_sigterm(signum, _frame) -> None:
        if not terminated:  # a second SIGTERM does not cut the clean-up short
            terminated.append(signum)
            UNSEEN_STOPS.append(signum)
            STOPS_RECEIVED.append(signum)
            raise KeyboardInterrupt

    def on_sigint(signum, _frame) -> None:
        # Python's own Ctrl-C, remembered: Lightning catches it and exits 1 after its clean-up
        interrupted.append(signum)
        UNSEEN_STOPS.append(signum)
        STOPS_RECEIVED.append(signum)
        raise KeyboardInterrupt

    class _Watched:
        """stdout, remembering whether anything was written (the command's own JSON)."""

        def __init__(self, stream) -> None:
            self.stream, self.used = stream, False

        def write(self, text: str) -> int:
            self.used = self.used or bool(text)
            return self.stream.write(text)

        def __getattr__(self, name: str):
            return getattr(self.stream, name)

    def finish(message: str, code: int, line: str | None = None, note: str | None = None) -> None:
        remove_temporaries()
        sys.stderr.write((line if line is not None else f"error: {message}") + "\n")
        if json_out and not stdout.used and json_errors:
            failure = {"error": message, "exit_code": code, **({"note": note} if note else {})}
            stdout.stream.write(json.dumps(failure) + "\n")
            stdout.stream.flush()
        sys.exit(code)

    def stopped(code: int | None) -> None:
        note = STOP_NOTES[-1] if STOP_NOTES else None
        shown = f" ({note})" if note else ""
        if terminated:
            finish("terminated (SIGTERM)", 143, "terminated" + shown, note)
        if code == 130 or interrupted:
            finish("interrupted", 130, "interrupted" + shown, note)

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, on_sigterm) if in_main_thread else None
    previous_int = None
    if in_main_thread and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        previous_int = signal.signal(signal.SIGINT, on_sigint)
    stdout = _Watched(sys.stdout)
    sys.stdout = stdout
    code = None
    try:
        with warnings.catch_warnings():
            for module in ("PIL", "pydicom", "SimpleITK", "vtkmodules", "vedo", "torchio"):
                warnings.filterwarnings("ignore", module=rf"{module}(\.|$)")
            warnings.filterwarnings("ignore", message=r"Image size \(\d+ pixels\) exceeds limit")
            warnings.filterwarnings(
                "ignore",
                category=RuntimeWarning,
                message=r"(invalid value|divide by zero|overflow) encountered|Mean of empty slice",
            )
            command = typer.main.get_command(app)
            # standalone_mode=False: usage errors come back as exceptions (printed below as one
            # line) instead of Rich panels; Ctrl-C and typer.Exit come back as an exit code
            code = command.main(args=args, prog_name="recon", standalone_mode=False)
    except ReconError as error:
        if debug:
            remove_temporaries()
            raise
        finish(str(error), error.exit_code)
    except typer.TyperException as error:  # Click's usage errors and the like
        if type(error).__name__ == "NoArgsIsHelpError":  # the help was printed
            sys.exit(2)
        message, line = _usage_error(error, args)
        finish(message, error.exit_code, line)
    except typer.Abort:
        finish("aborted", 1)
    except KeyboardInterrupt:
        stopped(130)
    except SystemExit as exit_:
        stopped(exit_.code)
        raise
    except MemoryError as error:  # numpy's message names the array; Python's is empty
        if debug:
            remove_temporaries()
            raise
        detail = f" ({str(error).splitlines()[0]})" if str(error) else ""
        finish(
            f"out of memory{detail}: try smaller sizes, fewer workers, or a bigger machine",
            1,
        )
    except Exception as error:  # anything unforeseen still ends in one line
        # a stop raised inside a native library's start-up comes back as its own error
        # (open3d: "ImportError: initialization failed"): the stop is what happened. The
        # half-started library would print to stdout and change the exit status as the
        # interpreter ends, so the process leaves at once (temporaries already removed).
        try:
            stopped(None)
        except SystemExit as exit_:
            if isinstance(error, ImportError):
                sys.stderr.flush()
                os._exit(exit_.code if isinstance(exit_.code, int) else 1)
            raise
        if debug:
            remove_temporaries()
            raise
        if isinstance(error, OSError) and error.errno in FULL_DISK:
            finish(_full_disk(error), 1)  # a cluster's quota: said plainly, not as OSError
        message = str(error).splitlines()[0] if str(error) else ""
        finish(
            f"{type(error).__name__}: {message}",
            1,
            f"error: {type(error).__name__}: {message} (set RECON_DEBUG=1 for the traceback)",
        )
    finally:
        sys.stdout = stdout.stream
        if in_main_thread and argv is None:
            # the `recon` process ends here, its outputs written and its result printed: a stop
            # now (while the interpreter winds down torch, about 0.5 s) would only turn a
            # finished run into exit 130 with a success result on stdout
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        elif in_main_thread:  # called in a process that goes on (tests, an embedding program)
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
            if previous_int is not None:
                signal.signal(signal.SIGINT, previous_int)
    if code in (0, None) and (terminated or interrupted):
        # the KeyboardInterrupt was swallowed by a library loading at that moment (trimesh's
        # optional imports) and no progress loop came after to raise it again: the command
        # ran to its end and its outputs are whole, so it succeeded
        stop = "SIGTERM" if terminated else "Ctrl-C"
        sys.stderr.write(
            f"warning: the stop ({stop}) came while a library was loading, which swallowed it; "
            "the command ran to its end\n"
        )
    else:
        stopped(code)
    code = code if isinstance(code, int) else 0
    if code and json_out and not stdout.used and json_errors:  # a command's typer.Exit(code)
        stdout.stream.write(json.dumps({"error": "failed", "exit_code": code}) + "\n")
    sys.exit(code)


def _usage_error(error: typer.TyperException, args: list[str]) -> tuple[str, str]:
    """A Typer/Click usage error as (message, stderr line): the message on one line, lower case
    like every other error, naming the option or argument; the line adds where to read more."""
    import re

    message = " ".join(error.format_message().split()).rstrip(".")
    # "Invalid value for '--views': Input should be ..." -> "invalid value for '--views': input ..."
    message = re.sub(r"(^|: )([A-Z])(?=[a-z])", lambda m: m[1] + m[2].lower(), message)
    message = message.replace(": value error, ", ": ")  # pydantic's prefix on a bad choice
    ctx = getattr(error, "ctx", None)
    command_path = ctx.command_path if ctx is not None else _command_path(args)
    return message, f"error: {message}; see '{command_path} --help'"


def _full_disk(error: OSError) -> str:
    """The line for a write refused for want of space or quota (ENOSPC, EDQUOT): the folder
    and what to do. The folder is the destination's (filename2 when a copy failed: shutil names
    its source first, a temporary file elsewhere), the first one up that still exists (a failed
    command removes what it made) and is not hidden (the name of one of our temporaries means
    nothing to the user)."""
    folder = None
    target = error.filename2 or error.filename
    if target:
        folder = os.path.dirname(os.path.abspath(os.fsdecode(target)))
        while os.path.dirname(folder) != folder and (
            os.path.basename(folder).startswith(".") or not os.path.isdir(folder)
        ):
            folder = os.path.dirname(folder)
    if error.errno == errno.EDQUOT:
        what = "disk quota exceeded" + (f" in {folder}" if folder else "")
    else:
        what = "no space left on the disk" + (f" of {folder}" if folder else "")
    return f"{what}: free some space, or write elsewhere (unfinished files are removed)"


def _command_path(args: list[str]) -> str:
    """`recon` and the (sub)command words that start args, e.g. "recon synth meshes"."""
    command, words = typer.main.get_command(app), ["recon"]
    for word in args:
        commands = getattr(command, "commands", {})
        if word not in commands:
            break
        command = commands[word]
        words.append(word)
    return " ".join(words)


if __name__ == "__main__":
    main()
