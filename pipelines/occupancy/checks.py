"""Data set checks for the voxel tasks: every problem named with the file it concerns.

Problem kinds: no-entries, missing-field, bad-field (a path field that is not a string, a
category that is not a class name),
path-escapes-root, missing-image, unreadable-image, image-too-small,
bbox-outside-image (also an empty box), missing-voxel, unreadable-voxel (truncated or corrupt
.mat, or not a cubic 3D grid), empty-voxel (all zero), shape-mismatch (unlike the most common
shape), duplicate-entry, missing-mesh, unreadable-mesh, empty-mesh, no-images, duplicate-image,
unfinished-set (a `recon synth parts` set with fewer parts made than its records state),
cannot-split (fewer than 2 3D models or parts: training holds whole ones out for validation).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from recon.pipelines.common.datacheck import SPLIT_KIND, CheckReport, split_problem
from recon.pipelines.common.errors import BadInput
from recon.pipelines.common.splits import same_content
from recon.pipelines.occupancy.images import MIN_SIDE


def inside_root(root: Path, relative: str) -> Path | None:
    """root / relative resolved, or None when it leaves root (../, absolute, symlink out)."""
    if not isinstance(relative, str) or not relative:
        return None
    target = (root / relative).resolve()
    return target if target.is_relative_to(root.resolve()) else None


def image_problem(path: Path) -> tuple[str, str] | None:
    """(kind, detail) when an image is missing, unreadable or too small; else None."""
    from recon.pipelines.common.io import read_image

    if not path.is_file():
        return "missing-image", "no such file"
    try:
        image = read_image(path)
    except BadInput as error:
        return "unreadable-image", str(error).split(": ", 1)[-1]
    height, width = image.shape[:2]
    if min(width, height) < MIN_SIDE:
        return "image-too-small", f"{width} x {height} pixels"
    return None


def image_size(path: Path) -> tuple[int, int] | None:
    from recon.pipelines.common.io import picture_size

    try:
        return picture_size(path)
    except BadInput:
        return None


def check_voxel(root: Path, track: Callable = lambda items, _d: items) -> CheckReport:
    """Check a Pix3D-layout root (pix3d.json + the files it names)."""
    from recon.pipelines.occupancy.pix3d import load_entries

    root = Path(root)
    entries = load_entries(root)
    report = CheckReport("voxel", str(root), items=len(entries))
    if not entries:
        report.add("no-entries", root / "pix3d.json", "the list of entries is empty")
    seen_images: dict[str, int] = {}
    voxels: dict[str, Path] = {}
    classes = Counter()
    for index, entry in enumerate(track(entries, "check entries")):
        classes[_category(report, entry, index)] += 1
        image = _entry_path(report, root, entry, "img", index)
        if image is not None:
            if str(image) in seen_images:
                report.add(
                    "duplicate-entry",
                    entry["img"],
                    f"entry {index} repeats entry {seen_images[str(image)]}",
                )
            else:
                seen_images[str(image)] = index
            problem = image_problem(image)
            if problem:
                report.add(problem[0], image, problem[1])
            elif entry.get("bbox") is not None:  # none: training finds the object itself
                _check_bbox(report, image, entry["bbox"])
        voxel = _entry_path(report, root, entry, "voxel", index)
        if voxel is not None:
            voxels.setdefault(str(voxel), voxel)
    for kind, path, detail in voxel_problems(list(voxels.values()), track):
        report.add(kind, path, detail)
    split = too_few_sources("voxel", list(voxels.values()))
    if entries and split is not None:  # no entries: no-entries says so
        report.add(SPLIT_KIND, root / "pix3d.json", split)
    report.per_class = dict(sorted(classes.items()))
    return report


def voxel_problems(
    paths: list[Path], track: Callable = lambda items, _d: items
) -> list[tuple[str, Path, str]]:
    """(kind, file, detail) for each voxel file that is missing (missing-voxel), unreadable
    (unreadable-voxel: truncated, corrupt, not a cubic 3D grid), all zero (empty-voxel), or of
    another shape than most of paths (shape-mismatch). check-data lists them all; training
    refuses the first."""
    from recon.pipelines.occupancy.matfiles import MatError, read_voxel_mat

    problems, shapes = [], {}
    for path in track(paths, "check voxel grids"):
        if not path.is_file():
            problems.append(("missing-voxel", path, "no such file"))
            continue
        try:
            grid = read_voxel_mat(path)
        except MatError as error:
            problems.append(("unreadable-voxel", path, str(error)))
            continue
        shapes[path] = grid.shape
        if not np.any(grid):
            problems.append(("empty-voxel", path, "all voxels are zero"))
    if shapes:
        common = Counter(shapes.values()).most_common(1)[0][0]
        problems += [
            ("shape-mismatch", path, f"grid {shape}, most files are {common}")
            for path, shape in shapes.items()
            if shape != common
        ]
    return problems


SPLIT_UNITS = {"voxel": ("entries", "3D model"), "parts": ("images", "part")}


def too_few_sources(task: str, sources: list[Path]) -> str | None:
    """split_problem of a voxel or parts set (task) whose items come from these files (3D
    models, parts), files of the same content counted once as training's split counts them
    (splits.same_content: voxel grids as training reads them, meshes by their bytes);
    check-data and training judge it here."""
    from recon.pipelines.occupancy.matfiles import read_occupancy

    items, unit = SPLIT_UNITS[task]
    read = read_occupancy if task == "voxel" else None  # parts: mesh files, by their bytes
    return split_problem(len(set(same_content(sources, read).values())), items, unit)


def _category(report: CheckReport, entry: dict, index: int) -> str:
    """The entry's class name (pix3d.entry_category), or "?" after recording the problem."""
    from recon.pipelines.occupancy.pix3d import EntryProblem, entry_category

    try:
        return entry_category(entry, index)
    except EntryProblem as problem:
        report.add(problem.kind, problem.where, problem.detail)
        return "?"


def _entry_path(report: CheckReport, root: Path, entry: dict, key: str, index: int):
    """The entry's confined path (pix3d.entry_path), or None after recording the problem."""
    from recon.pipelines.occupancy.pix3d import EntryProblem, entry_path

    try:
        return entry_path(root, entry, key, index)
    except EntryProblem as problem:
        where = problem.where.replace(f"{root / 'pix3d.json'} ", "")
        report.add(problem.kind, where, problem.detail)
        return None


def _check_bbox(report: CheckReport, image: Path, bbox) -> None:
    problem = bbox_problem(image, bbox)
    if problem is not None:
        report.add("bbox-outside-image", image, problem)


def bbox_problem(image: Path, bbox) -> str | None:
    """What is wrong with an entry's bbox for its image (None: nothing, or the image cannot be
    read, which is its own problem): not four numbers [x0, y0, x1, y1], an empty box (naming
    the bound that is not below its pair, e.g. "x0 40 > x1 10"), or a box not inside the
    image. check-data and training judge it here."""
    from recon.pipelines.occupancy.images import is_box

    if not is_box(bbox):
        return f"bbox {bbox!r} is not [x0, y0, x1, y1]"
    x0, y0, x1, y1 = bbox
    for axis, low, high in (("x", x0, x1), ("y", y0, y1)):
        if low >= high:
            bounds = f"{axis}0 {low} {'>' if low > high else '='} {axis}1 {high}"
            return f"bbox {list(bbox)}: {bounds}; {axis}0 must be below {axis}1"
    size = image_size(image)
    if size is None:
        return None
    width, height = size
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):  # NaN fails each of them
        return f"bbox {list(bbox)} in a {width} x {height} image"
    return None


def check_parts(root: Path, track: Callable = lambda items, _d: items) -> CheckReport:
    """Check a parts root (models/<class>/<part>.stl + images/<class>/<part>/*)."""
    from recon.pipelines.common.io import load_mesh
    from recon.pipelines.occupancy.parts import part_images, parts_layout, unfinished_set

    root = Path(root)
    meshes, folders = parts_layout(root)
    report = CheckReport("parts", str(root))
    unfinished = unfinished_set(root)
    if unfinished is not None:
        report.add("unfinished-set", *unfinished)
    classes, hashes = Counter(), {}
    for key, folder in folders.items():
        if key not in meshes:
            report.add("missing-mesh", folder, f"no models/{key[0]}/{key[1]}.stl for these images")
    for key, mesh_path in track(list(meshes.items()), "check parts"):
        if inside_root(root, str(mesh_path.relative_to(root))) is None:
            report.add("path-escapes-root", mesh_path, "links outside ROOT")
            continue
        try:
            mesh = load_mesh(mesh_path)
            if abs(mesh.volume) <= 0 or not np.isfinite(mesh.volume):
                report.add("empty-mesh", mesh_path, "mesh encloses no volume")
        except BadInput as error:
            kind = (
                "empty-mesh"
                if "empty" in str(error) or "no faces" in str(error)
                else "unreadable-mesh"
            )
            report.add(kind, mesh_path, str(error).split(": ", 1)[-1])
        images = part_images(folders.get(key))
        if not images:
            report.add("no-images", mesh_path, f"nothing under images/{key[0]}/{key[1]}/")
        for image in images:
            if inside_root(root, str(image.relative_to(root))) is None:
                report.add("path-escapes-root", image, "links outside ROOT")
                continue
            problem = image_problem(image)
            if problem:
                report.add(problem[0], image, problem[1])
                continue
            digest = hashlib.sha1(image.read_bytes()).hexdigest()
            if digest in hashes:
                report.add("duplicate-image", image, f"same content as {hashes[digest]}")
            else:
                hashes[digest] = image
            classes[key[0]] += 1
            report.items += 1
    split = too_few_sources("parts", list(meshes.values()))
    if split is not None:
        report.add(SPLIT_KIND, root, split)
    report.per_class = dict(sorted(classes.items()))
    return report
