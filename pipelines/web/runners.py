"""What a worker process does with one job: run the task's predict function on the upload,
then write the viewer's GLB (trimesh) beside the task's own outputs.

A runner calls one predict-function convention and returns {"files": {role: name}, "summary":
{...}, "meshes": {name: path}} and, where the task warns, "warnings": [line, ...]; the meshes
become the named nodes of the viewer's GLB, the warnings (the `warning:` lines `recon predict`
prints) the summary's "warnings" list.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from recon.pipelines.web.tasks import SERVE_TASKS, resolve

Progress = Callable[[float, str], None]  # (fraction 0..1, stage)
VIEWER_NAME = "viewer.glb"
PREVIEW_NAME = "input_preview.png"
BROWSERLESS_SUFFIXES = (".tif", ".tiff")  # uploads browsers do not display
RESULT_STEM = "result"


def run_job(task: str, checkpoint: Path, image: Path, out: Path, device: str, progress: Progress):
    """Run one job into the folder out -> {"files": {role: name}, "summary": {...}} (with the
    task's "warnings" in the summary where it warns)."""
    spec = SERVE_TASKS[task]
    result = resolve(spec.runner)(spec, checkpoint, image, out, device, progress)
    warnings = result.pop("warnings", [])
    if warnings:
        result["summary"]["warnings"] = warnings
    if image.suffix.lower() in BROWSERLESS_SUFFIXES:  # the page shows a PNG of it instead
        result["files"]["preview"] = write_preview(image, out / PREVIEW_NAME)
    meshes = result.pop("meshes")
    if meshes:
        progress(0.9, "viewer mesh")
        result["summary"]["faces"] = write_viewer_glb(meshes, out / VIEWER_NAME)
        result["files"] = {"viewer": VIEWER_NAME, **result["files"]}
    return result


def _tracker(progress: Progress):
    def track(items, _description):
        progress(0.3, "inference")
        yield from items
        progress(0.6, "surface and render")

    return track


def split_record(record: dict, out: Path) -> tuple[dict, dict]:
    """A predict record -> (files: key -> name of each output file in out, summary: the plain
    numbers, flags and words)."""
    files, summary = {}, {}
    for key, value in record.items():
        if isinstance(value, str) and Path(value).parent == out and Path(value).is_file():
            files[key] = Path(value).name
        elif isinstance(value, bool | int | float) or (
            isinstance(value, str) and "/" not in value and "\\" not in value
        ):
            summary[key] = value
    return files, summary


def run_mesh_task(spec, checkpoint: Path, image: Path, out: Path, device: str, progress: Progress):
    """The predict_images convention (voxel, parts): one mesh per image under "mesh"."""
    progress(0.1, "loading model")
    predict = resolve(spec.predict)
    [record] = predict(
        spec.name, checkpoint, [image], [RESULT_STEM], out, "stl", True, device, _tracker(progress)
    )
    files, summary = split_record(record, out)
    meshes = {"mesh": Path(record["mesh"])} if record.get("mesh") else {}
    warnings = [record["warning"]] if record.get("warning") else []
    return {"files": files, "summary": summary, "meshes": meshes, "warnings": warnings}


def run_skull_task(spec, checkpoint: Path, image: Path, out: Path, device: str, progress: Progress):
    """The predict_skull convention: a skull and a face mesh per image."""
    progress(0.1, "loading model")
    predict = resolve(spec.predict)
    [record] = predict(checkpoint, [image], [RESULT_STEM], out, True, device, _tracker(progress))
    files, summary = split_record(record, out)
    meshes = {head: Path(record[head]) for head in ("skull", "face") if record.get(head)}
    return {"files": files, "summary": summary, "meshes": meshes}


def write_preview(image: Path, png: Path) -> str:
    """An 8-bit RGB PNG of an uploaded image, as the tasks read it; its file name."""
    from recon.pipelines.common.io import read_rgb, write_png

    write_png(png, read_rgb(image))
    return png.name


def write_viewer_glb(meshes: dict[str, Path], glb_path: Path) -> int:
    """The z-up meshes as one binary glTF, y up as glTF specifies (Z_UP_TO_Y_UP, as save_mesh
    writes a .glb), one node named after each (same faces); the total face count."""
    import trimesh

    from recon.pipelines.common.io import Z_UP_TO_Y_UP
    from recon.pipelines.common.outputs import atomic_file

    scene = trimesh.Scene()
    faces = 0
    for name, path in meshes.items():
        mesh = trimesh.load(path, force="mesh")
        mesh.apply_transform(Z_UP_TO_Y_UP)
        scene.add_geometry(mesh, node_name=name, geom_name=name)
        faces += len(mesh.faces)
    with atomic_file(glb_path) as tmp:
        tmp.write_bytes(scene.export(file_type="glb"))
    return faces
