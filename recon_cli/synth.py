"""`recon synth KIND`: procedural data sets in the exact layouts the pipelines read."""

from pathlib import Path
from typing import Annotated

import typer

from recon.cli.common import (
    Json,
    Overwrite,
    Quiet,
    ReconCommand,
    ReconGroup,
    Reporter,
    ShardOption,
    SkipDone,
    UnusedSeed,
    key_value_table,
)

app = typer.Typer(
    cls=ReconGroup,
    help="Make procedural data sets in the layouts the pipelines read.",
    no_args_is_help=True,
)


@app.command("meshes", cls=ReconCommand, no_args_is_help=True)
def meshes(
    out: Annotated[Path, typer.Option("-o", "--out", help="Output folder.")],
    shapes: Annotated[
        str, typer.Option(help="Comma-separated: sphere, capsule, box, torus, torso.")
    ] = "sphere,capsule,box,torus,torso",
    seed: UnusedSeed = None,
    shard: ShardOption = None,
    skip_done: SkipDone = False,
    overwrite: Overwrite = False,
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Write watertight test shapes as STL, in millimetres with z up.

    The torso is a closed tube whose cross-sections follow a scoliotic spine (Cobb 25 deg).
    Each shape depends only on its name (nothing is drawn at random), so shards (--shard K/N)
    together write
    exactly the files of one whole run. The run's record is OUT/run.json (a shard's,
    OUT/run.shard-K-of-N.json).

    Example: recon synth meshes -o shapes --shapes sphere,torso
    """
    import time

    from recon.pipelines.common.batch import (
        check_batch_output,
        output_folder,
        parse_shard,
        plan_batch,
    )
    from recon.pipelines.common.errors import BadInput
    from recon.pipelines.common.io import save_mesh
    from recon.pipelines.common.outputs import run_record, write_json
    from recon.pipelines.shapes.meshes import SHAPES, make_shape

    ui = Reporter(json_out, quiet)
    names = [s.strip() for s in shapes.split(",") if s.strip()]
    unknown = [n for n in names if n not in SHAPES]
    if unknown or not names:
        raise BadInput(
            f"--shapes: unknown {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(SHAPES)}"
        )
    target = Path(out).expanduser().absolute()
    plan = plan_batch(
        len(names), lambda i: [target / f"{names[i]}.stl"], parse_shard(shard), skip_done, overwrite
    )
    out = check_batch_output(out, plan, overwrite, "synth meshes")
    written = {}
    clock = time.perf_counter()
    with output_folder(out, plan) as folder:
        for name in ui.track([names[i] for i in plan.todo], "shapes"):
            mesh = make_shape(name)
            save_mesh(mesh, folder / f"{name}.stl")
            written[name] = {"path": str(out / f"{name}.stl"), "faces": len(mesh.faces)}
        skipped = [names[i] for i in plan.done]
        results = {"shapes": written, "skipped_inputs": skipped, **plan.summary()}
        timings = {"synth": time.perf_counter() - clock}
        record = run_record("synth meshes", None, {"shapes": names}, timings, results)
        write_json(folder / plan.shard.results_name(), record)
    rows = [(name, f"{mesh['faces']} faces") for name, mesh in written.items()]
    if plan.skip_done:
        rows.append(("skipped (done)", len(plan.done)))
    ui.result(
        {"out": str(out), "shapes": written, **plan.summary()},
        key_value_table(f"synth meshes -> {out}", rows),
    )
