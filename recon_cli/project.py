"""`recon project`: mesh -> depth and silhouette views + views.json."""

from pathlib import Path
from typing import Annotated, Literal

import typer

from recon.cli.common import Json, Overwrite, Quiet, Reporter, check_range, key_value_table

MAX_PIXELS = 1 << 26  # views x size^2: the rays of all views are cast at once (24 bytes each)


def project(
    mesh: Annotated[Path, typer.Argument(help="Input mesh: STL, PLY, OBJ, GLB, GLTF or OFF.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output folder for the views.")],
    views: Annotated[
        int, typer.Option(help="Views around the vertical axis, evenly spaced, 1 to 360.")
    ] = 8,
    caps: Annotated[
        bool, typer.Option("--caps/--no-caps", help="Add a top and a bottom view.")
    ] = True,
    size: Annotated[
        int,
        typer.Option(
            help="Image width and height in pixels, 8 to 4096, and at most 2^26 pixels over "
            "all views (2590 px for 8 views and 2 caps)."
        ),
    ] = 256,
    up: Annotated[
        Literal["x", "y", "z"] | None,
        typer.Option(
            help="The axis that points up, as the file stores it (a .glb/.gltf too). Default: z; "
            "y for a .glb/.gltf (with front -z, unless --front is given).",
        ),
    ] = None,
    front: Annotated[
        Literal["+x", "-x", "+y", "-y", "+z", "-z"] | None,
        typer.Option(
            help="The direction the object faces, as the file stores it, turned onto +y (view 0 "
            "sees it on its right). Default: +y for --up z, +x for --up y, +z for --up x.",
        ),
    ] = None,
    overwrite: Overwrite = False,
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Render a mesh into orthographic depth and silhouette images around its vertical axis.

    Writes depth_<view>.png (16-bit; 0 = background, distance = value x depth.unit in the
    normalised frame), silhouette_<view>.png (8-bit) and views.json (cameras, the frame's
    scale and offset), which is all `recon backproject` needs, and the run's record run.json.

    Example: recon project torso.stl -o torso_views --views 8 --size 256
    """
    import time

    from recon.pipelines.common.errors import BadInput
    from recon.pipelines.common.io import load_mesh, mesh_file_axes
    from recon.pipelines.common.outputs import atomic_dir, check_output, run_record, write_json
    from recon.pipelines.shapes.projection import (
        default_axes,
        project_mesh,
        resolve_front,
        write_projection,
    )

    ui = Reporter(json_out, quiet)
    check_range("--views", views, 1, 360)
    check_range("--size", size, 8, 4096)
    file_axes = mesh_file_axes(mesh)  # a glTF comes in turned z up; --up/--front name its axes
    up, front = default_axes(up, front, file_axes)
    front = resolve_front(up, front)  # a front along the up axis: one line, before any work
    cameras = views + (2 if caps else 0)
    if cameras * size * size > MAX_PIXELS:
        raise BadInput(
            f"--views {views}{' + 2 caps' if caps else ''} at --size {size} is "
            f"{cameras * size * size} pixels, more than the {MAX_PIXELS} one run casts"
        )
    out = check_output(out, overwrite, inputs=[mesh], command="project")
    clock = time.perf_counter()
    source = load_mesh(mesh)
    loaded = time.perf_counter()
    try:
        projection = project_mesh(
            source, views=views, caps=caps, size=size, up=up, front=front, file_axes=file_axes
        )
    except BadInput as error:  # the options were checked above: this is about the mesh
        raise BadInput(f"{mesh}: {error}") from None
    cast = time.perf_counter()
    doc = projection.views_json(str(Path(mesh).resolve()), len(source.faces), len(source.vertices))
    frame = {
        "views": [v["name"] for v in doc["views"]],
        "scale": doc["frame"]["scale"],
        "offset": doc["frame"]["offset"],
    }
    with atomic_dir(out) as folder:
        write_projection(projection, folder, doc)
        timings = {"load": loaded - clock, "raycast": cast - loaded}
        timings["write"] = time.perf_counter() - cast
        config = {"views": views, "caps": caps, "size": size, "up": up, "front": front}
        write_json(folder / "run.json", run_record("project", None, config, timings, frame))
    result = {
        "out": str(out),
        "views": frame["views"],
        "size": size,
        "up": up,
        "front": front,
        "scale": frame["scale"],
        "offset": frame["offset"],
        "timings_s": timings,
    }
    ui.result(
        result,
        key_value_table(
            f"project {mesh}",
            [("views", len(doc["views"])), ("size", f"{size} px"), ("out", out)]
            + [(f"{k} (s)", v) for k, v in timings.items()],
        ),
    )
