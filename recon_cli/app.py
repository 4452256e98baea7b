"""The `recon` command: a Typer app whose commands are thin layers over recon.pipelines."""

from __future__ import annotations

import os
import sys

import typer

from recon import __version__
from recon.cli import backproject, demo, project, synth
from recon.pipelines.errors import ReconError

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
app.command("demo")(demo.demo)


def main(argv: list[str] | None = None) -> None:
    """Entry point: runs the app, turning known errors into one line on stderr and an exit code."""
    debug = bool(os.environ.get("RECON_DEBUG"))
    try:
        app(args=argv, prog_name="recon")
    except ReconError as error:
        if debug:
            raise
        sys.stderr.write(f"error: {error}\n")
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    except Exception as error:  # anything unforeseen still ends in one line
        if debug:
            raise
        message = str(error).splitlines()[0] if str(error) else ""
        sys.stderr.write(
            f"error: {type(error).__name__}: {message} (set RECON_DEBUG=1 for the traceback)\n"
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
