"""`recon predict TASK`: the sub-app; each task's command lives in its pipeline's CLI module."""

from __future__ import annotations

import typer

app = typer.Typer(help="Run a trained model on new inputs.", no_args_is_help=True)
