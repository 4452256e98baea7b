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
app.command("demo")(demo.demo)


def _help_as_prose(group: typer.Typer) -> None:
    for info in group.registered_commands:
        info.help = prose(info.help or info.callback.__doc__)
    for info in group.registered_groups:
        _help_as_prose(info.typer_instance)


_help_as_prose(app)


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
