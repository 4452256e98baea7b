"""`recon backproject`: views folder -> watertight mesh, optionally scored against a reference."""

from pathlib import Path
from typing import Annotated, Literal

import typer

from recon.cli.common import OUTPUT, Json, Overwrite, Quiet, Reporter, key_value_table

SURFACE = "Surface"


def backproject(
    views: Annotated[Path, typer.Argument(help="Folder written by `recon project`.")],
    out: Annotated[
        Path, typer.Option("-o", "--out", help="Mesh: .stl, .ply, .obj, .glb, .gltf or .off.")
    ],
    reference: Annotated[
        Path | None,
        typer.Option(help="Ground-truth mesh: report Chamfer-L1 and F-score@1% against it."),
    ] = None,
    method: Annotated[
        Literal["poisson", "vedo"],
        typer.Option(
            help="Surface method: open3d's screened Poisson or vedo's.", rich_help_panel=SURFACE
        ),
    ] = "poisson",
    depth: Annotated[
        int,
        typer.Option(
            help="Poisson octree depth, 4 to 11: the finest detail is the bounding box / 2^depth, "
            "so each step up halves it (and takes longer).",
            rich_help_panel=SURFACE,
        ),
    ] = 8,
    voxel: Annotated[
        float,
        typer.Option(help="Point merge grid in pixels, 0.25 to 16.", rich_help_panel=SURFACE),
    ] = 2.0,
    mls: Annotated[
        float,
        typer.Option(
            help="MLS smoothing radius in pixels, 1 to 32 (0 = off).", rich_help_panel=SURFACE
        ),
    ] = 0.0,
    trim: Annotated[
        float,
        typer.Option(
            help="Drop this quantile (0 to 0.5) of lowest-density Poisson vertices (opens the "
            "surface).",
            rich_help_panel=SURFACE,
        ),
    ] = 0.0,
    render: Annotated[
        bool,
        typer.Option(
            "--render",
            help="Also write a shaded PNG of the mesh beside it (m.stl -> m.png).",
            rich_help_panel=OUTPUT,
        ),
    ] = False,
    overwrite: Overwrite = False,
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Turn depth views back into a surface in the original mesh's frame (watertight with the
    default Poisson method; --method vedo may leave holes, and the table says which).

    Every foreground pixel is lifted to 3D, the views are merged, outliers dropped, normals
    oriented toward the camera that saw each point, and a surface reconstructed. Writes OUT and
    its run record, named after its whole file name (m.stl -> m.stl.run.json); --render adds a
    shaded picture, the mesh's suffix replaced (m.stl -> m.png).

    Example: recon backproject torso_views -o torso.stl --reference torso_original.stl
    """
    import sys
    import time

    from recon.pipelines.common.io import (
        MESH_SUFFIXES,
        load_mesh,
        require_dir,
        save_mesh,
        write_png,
    )
    from recon.pipelines.common.metrics import surface_score
    from recon.pipelines.common.outputs import (
        atomic_file,
        check_output,
        check_run_record,
        run_record,
        write_json,
    )
    from recon.pipelines.shapes.backprojection import SurfaceOptions, in_file_axes, reconstruct
    from recon.pipelines.shapes.projection import read_views
    from recon.pipelines.shapes.render import render_mesh

    ui = Reporter(json_out, quiet)
    options = SurfaceOptions(method=method, depth=depth, voxel=voxel, trim=trim, mls=mls)
    options.check()
    if options.unused():
        sys.stderr.write(
            f"warning: --method vedo ignores {' and '.join(options.unused())} (settings of "
            "open3d's Poisson surface)\n"
        )
    inputs = [views, reference]
    out = check_output(out, overwrite, suffixes=MESH_SUFFIXES, inputs=inputs)
    sidecar = check_run_record(out, overwrite, inputs=inputs)
    picture = check_output(out.with_suffix(".png"), overwrite, inputs=inputs) if render else None
    require_dir(views, "views folder")
    doc = read_views(views)
    truth = load_mesh(reference, file_axes=True) if reference is not None else None
    result = reconstruct(views, options)
    metrics: dict = {"watertight": bool(result.mesh.is_watertight), "faces": len(result.mesh.faces)}
    if truth is not None:  # both as their files store them: a .glb against a y-up .ply
        clock = time.perf_counter()
        metrics.update(surface_score(in_file_axes(result.mesh, doc), truth).as_dict())
        result.timings["score"] = time.perf_counter() - clock
    shaded = None
    if picture is not None:
        clock = time.perf_counter()
        shaded = render_mesh(result.mesh)
        result.timings["render"] = time.perf_counter() - clock
    config = {**vars(options), "render": render}
    record = run_record("backproject", None, config, result.timings, metrics)
    with atomic_file(sidecar) as tmp:  # the record is renamed into place last
        write_json(tmp, record)
        save_mesh(in_file_axes(result.mesh, doc, out.suffix), out)
        if shaded is not None:
            write_png(picture, shaded)
    rows = [("out", out), ("points", result.points), ("faces", metrics["faces"])]
    if picture is not None:
        rows.append(("render", picture))
    rows.append(("watertight", metrics["watertight"]))
    if truth is not None:
        rows += [
            (
                "Chamfer-L1",
                f"{metrics['chamfer_l1']:.4g} mesh units ({metrics['chamfer_l1_pct']:.3f}% diag)",
            ),
            ("F-score@1%", f"{metrics['fscore']:.3f}"),
        ]
    rows += [(f"{k} (s)", v) for k, v in result.timings.items()]
    ui.result(
        {
            "out": str(out),
            "render": str(picture) if picture is not None else None,
            "points": result.points,
            "metrics": metrics,
            "timings_s": result.timings,
        },
        key_value_table(f"backproject {views}", rows),
    )
