"""`recon synth KIND`: procedural data sets in the exact layouts the pipelines read."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recon.cli.common import Json, Overwrite, Quiet, Reporter, Seed, key_value_table

app = typer.Typer(
    help="Make procedural data sets in the layouts the pipelines read.", no_args_is_help=True
)


@app.command("meshes", no_args_is_help=True)
def meshes(
    out: Annotated[Path, typer.Option("-o", "--out", help="Output folder.")],
    shapes: Annotated[
        str, typer.Option(help="Comma-separated: sphere, capsule, box, torus, torso.")
    ] = "sphere,capsule,box,torus,torso",
    seed: Seed = 0,
    overwrite: Overwrite = False,
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Write watertight test shapes as STL, in millimetres with z up.

    The torso is a closed tube whose cross-sections follow a scoliotic spine (Cobb 25 deg).

    Example: recon synth meshes -o shapes --shapes sphere,torso
    """
    from recon.pipelines.common.errors import BadInput
    from recon.pipelines.common.io import save_mesh
    from recon.pipelines.common.outputs import atomic_dir, check_output
    from recon.pipelines.shapes.meshes import SHAPES, make_shape

    ui = Reporter(json_out, quiet)
    names = [s.strip() for s in shapes.split(",") if s.strip()]
    unknown = [n for n in names if n not in SHAPES]
    if unknown or not names:
        raise BadInput(
            f"--shapes: unknown {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(SHAPES)}"
        )
    out = check_output(out, overwrite)
    written = {}
    with atomic_dir(out) as folder:
        for name in ui.track(names, "shapes"):
            mesh = make_shape(name, seed)
            save_mesh(mesh, folder / f"{name}.stl")
            written[name] = {"path": str(out / f"{name}.stl"), "faces": len(mesh.faces)}
    ui.result(
        {"out": str(out), "shapes": written},
        key_value_table(f"synth meshes -> {out}", [(k, v["faces"]) for k, v in written.items()]),
    )
