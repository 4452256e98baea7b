"""`recon predict TASK`: the sub-app; each task's command lives in its pipeline's CLI module."""

import typer

from recon.cli.common import ReconGroup

app = typer.Typer(cls=ReconGroup, help="Run a trained model on new inputs.", no_args_is_help=True)
