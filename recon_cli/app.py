"""The `recon` command: a Typer app whose commands are thin layers over recon.pipelines."""

from __future__ import annotations

import os
import sys

import typer

from recon import __version__
from recon.cli import (
    augment,
    backproject,
    check_data,
    convert_mat,
    corset,
    demo,
    drr,
    embed_spine,
    make_drr,
    predict,
    project,
    register,
    serve,
    skull,
    synth,
    train,
    voxel,
    xray,
)
from recon.cli.common import prose
from recon.pipelines.common.errors import ReconError

app = typer.Typer(
    name="recon",
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


app.command("project", no_args_is_help=True)(project.project)
app.command("backproject", no_args_is_help=True)(backproject.backproject)
app.add_typer(synth.app, name="synth")
app.command("train", no_args_is_help=True)(train.train)
app.add_typer(predict.app, name="predict")
app.command("embed-spine", no_args_is_help=True)(embed_spine.embed_spine)
synth.app.command("corset", no_args_is_help=True)(corset.synth_corset)
predict.app.command("corset", no_args_is_help=True)(corset.predict_corset)
app.command("augment", no_args_is_help=True)(augment.augment)
synth.app.command("pairs", no_args_is_help=True)(drr.synth_pairs)
predict.app.command("drr", no_args_is_help=True)(drr.predict_drr)
app.command("convert-mat", no_args_is_help=True)(convert_mat.convert_mat)
app.command("check-data", no_args_is_help=True)(check_data.check_data)
synth.app.command("pix3d", no_args_is_help=True)(voxel.synth_pix3d)
synth.app.command("parts", no_args_is_help=True)(voxel.synth_parts)
predict.app.command("voxel", no_args_is_help=True)(voxel.predict_voxel)
predict.app.command("parts", no_args_is_help=True)(voxel.predict_parts)
app.command("make-drr", no_args_is_help=True)(make_drr.make_drr)
app.command("register", no_args_is_help=True)(register.register)
synth.app.command("xray", no_args_is_help=True)(xray.synth_xray)
synth.app.command("skull", no_args_is_help=True)(skull.synth_skull)
predict.app.command("skull", no_args_is_help=True)(skull.predict_skull)
app.command("demo")(demo.demo)
app.command("serve", no_args_is_help=True)(serve.serve)


def _help_as_prose(group: typer.Typer) -> None:
    for info in group.registered_commands:
        info.help = prose(info.help or info.callback.__doc__)
    for info in group.registered_groups:
        _help_as_prose(info.typer_instance)


_help_as_prose(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point: runs the app, turning known errors into one line on stderr and an exit code.

    Exit codes: 0 success, 1 the job failed its purpose or an unforeseen error, 2 bad usage or
    input, 130 Ctrl-C, 143 SIGTERM (a batch scheduler's stop: handled like Ctrl-C, temporaries
    removed). With --json a failure also prints {"error": ..., "exit_code": ...} on stdout unless
    the command printed its own JSON result. Library warnings users cannot act on are hidden.
    """
    import json
    import signal
    import threading
    import warnings

    from recon.pipelines.common.outputs import remove_temporaries

    debug = bool(os.environ.get("RECON_DEBUG"))
    args = list(sys.argv[1:] if argv is None else argv)
    json_out = "--json" in args[: args.index("--")] if "--" in args else "--json" in args
    terminated: list[int] = []

    def on_sigterm(signum, _frame) -> None:
        if not terminated:  # a second SIGTERM does not cut the clean-up short
            terminated.append(signum)
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

    def finish(message: str, code: int, line: str | None = None) -> None:
        remove_temporaries()
        sys.stderr.write((line if line is not None else f"error: {message}") + "\n")
        if json_out and not stdout.used:
            stdout.stream.write(json.dumps({"error": message, "exit_code": code}) + "\n")
            stdout.stream.flush()
        sys.exit(code)

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, on_sigterm) if in_main_thread else None
    stdout = _Watched(sys.stdout)
    sys.stdout = stdout
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
            app(args=argv, prog_name="recon")
    except ReconError as error:
        if debug:
            remove_temporaries()
            raise
        finish(str(error), error.exit_code)
    except KeyboardInterrupt:
        if terminated:
            finish("terminated (SIGTERM)", 143, "terminated")
        finish("interrupted", 130, "interrupted")
    except SystemExit as exit_:
        if terminated:
            finish("terminated (SIGTERM)", 143, "terminated")
        if exit_.code == 130:
            finish("interrupted", 130, "interrupted")
        if json_out and exit_.code not in (0, None) and not stdout.used:
            code = exit_.code if isinstance(exit_.code, int) else 1
            stdout.stream.write(json.dumps({"error": "bad usage", "exit_code": code}) + "\n")
        raise
    except Exception as error:  # anything unforeseen still ends in one line
        if debug:
            remove_temporaries()
            raise
        message = str(error).splitlines()[0] if str(error) else ""
        finish(
            f"{type(error).__name__}: {message}",
            1,
            f"error: {type(error).__name__}: {message} (set RECON_DEBUG=1 for the traceback)",
        )
    finally:
        sys.stdout = stdout.stream
        if in_main_thread:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


if __name__ == "__main__":
    main()
