"""Augmenting a paired X-ray / DRR set: one geometric draw for both sides, photometry on the X-ray.

For every pair and copy k, one albumentations geometric transform (flip, rotation, scale,
translation, crop-and-resize back to the pair's size) is drawn and applied to both images
(`additional_targets`), so the pair stays in register; then photometric transforms (brightness,
contrast, gamma, blur, noise) change the X-ray only, because the DRR is the target to predict.
Copy k of pair NAME is written as xray/NAME_augK.png and drr/NAME_augK.png (K from 1); with
`originals` the input pairs are copied too under their own names. PNG inputs keep their bit depth,
DICOM inputs become 16-bit PNG. The draw for (pair, copy) depends only on the seed, the pair's name
and k, so a run is reproducible and independent of the order or number of other pairs. `train drr`
reads the _augK suffix back and keeps NAME and its copies on one side of its train/val split.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from recon.pipelines.common.errors import BadInput
from recon.pipelines.xray.pairs import DRR_DIR, XRAY_DIR, find_pairs, read_gray, to_uint


@dataclass(frozen=True)
class AugmentConfig:
    copies: int = 4  # augmented copies per pair
    originals: bool = True  # also copy the input pairs unchanged
    flip: float = 0.5  # probability of a horizontal flip
    rotate: float = 10.0  # rotation range +- degrees
    scale: float = 0.1  # zoom range 1 +- scale
    translate: float = 0.05  # shift range +- fraction of the size
    crop: float = 0.85  # smallest crop area fraction (then resized back)
    photometric: bool = True  # brightness/contrast/gamma/blur/noise on the X-ray side
    brightness: float = 0.15  # +- fraction
    contrast: float = 0.15  # +- fraction
    noise: float = 0.02  # largest Gaussian noise std, fraction of full scale

    def as_dict(self) -> dict:
        return asdict(self)


def geometric_transform(shape: tuple[int, int], config: AugmentConfig):
    """The shared geometric transform for one image size; call it with image= and drr=."""
    import albumentations as A
    import cv2

    height, width = shape
    steps = [
        A.HorizontalFlip(p=config.flip),
        A.Affine(
            rotate=(-config.rotate, config.rotate),
            scale=(1 - config.scale, 1 + config.scale),
            translate_percent=(-config.translate, config.translate),
            interpolation=cv2.INTER_LINEAR,
            border_mode=cv2.BORDER_CONSTANT,
            fill=0,
            p=1.0,
        ),
    ]
    if config.crop < 1:
        steps.append(
            A.RandomResizedCrop(
                size=(height, width), scale=(config.crop, 1.0), ratio=(0.9, 1.1), p=1.0
            )
        )
    return A.Compose(steps, additional_targets={"drr": "image"})


def photometric_transform(config: AugmentConfig):
    """X-ray-only intensity changes on float32 images in [0, 1]."""
    import albumentations as A

    return A.Compose(
        [
            A.RandomBrightnessContrast(
                brightness_limit=config.brightness, contrast_limit=config.contrast, p=0.8
            ),
            A.RandomGamma(gamma_limit=(80, 120), p=0.5),
            A.GaussianBlur(blur_limit=(3, 5), sigma_limit=(0.1, 1.0), p=0.3),
            A.GaussNoise(std_range=(0.0, config.noise), p=0.5),
        ]
    )


def draw_seed(seed: int, name: str, copy: int) -> int:
    """A 32-bit seed that depends only on (seed, pair name, copy index)."""
    digest = hashlib.sha256(f"{seed}:{name}:{copy}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def augment_pair(
    xray: np.ndarray, drr: np.ndarray, config: AugmentConfig, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """One augmented copy of a float32 (H, W) pair in [0, 1]; deterministic in seed."""
    geometric = geometric_transform(xray.shape, config)
    geometric.set_random_seed(seed)
    moved = geometric(image=xray, drr=drr)
    xray_out, drr_out = moved["image"], moved["drr"]
    if config.photometric:
        photometric = photometric_transform(config)
        photometric.set_random_seed(seed + 1)
        xray_out = photometric(image=xray_out)["image"]
    return np.clip(xray_out, 0, 1), np.clip(drr_out, 0, 1)


def check_output_names(source: Path, names: list[str], config: AugmentConfig) -> None:
    """BadInput when two pairs written from the pairs `names` of SOURCE (each original with
    `originals`, then its copies NAME_augK) would share a file name, ignoring case as some file
    systems do: an input pair named like another's copy."""
    written: dict[str, str] = {}
    for name in names:
        versions = {name: f"the input pair {name}"} if config.originals else {}
        versions |= {f"{name}_aug{k}": f"copy {k} of {name}" for k in range(1, config.copies + 1)}
        for version, what in versions.items():
            clash = written.setdefault(version.lower(), what)
            if clash != what:
                raise BadInput(
                    f"{source}: {version}.png would be written twice, as {clash} and as {what}; "
                    "augment a set without earlier copies (NAME_augK), or pass --no-originals"
                )


def augment_pairs(
    source: Path,
    folder: Path,
    config: AugmentConfig,
    seed: int = 0,
    track: Callable | None = None,
) -> dict[str, int]:
    """Write augmented pairs of SOURCE into FOLDER/xray and FOLDER/drr; returns counts."""
    from recon.pipelines.common.io import write_png

    pairs = find_pairs(source)
    check_output_names(source, [pair.name for pair in pairs], config)
    folder = Path(folder)
    for sub in (XRAY_DIR, DRR_DIR):
        (Path(folder) / sub).mkdir(parents=True, exist_ok=True)
    track = track or (lambda items, _description: items)
    written = 0
    for pair in track(pairs, "augment"):
        xray, xray_bits = read_gray(pair.xray)
        drr, drr_bits = read_gray(pair.drr)
        xray_bits, drr_bits = _png_bits(pair.xray, xray_bits), _png_bits(pair.drr, drr_bits)
        versions = [(pair.name, xray, drr)] if config.originals else []
        for copy in range(1, config.copies + 1):
            new_xray, new_drr = augment_pair(xray, drr, config, draw_seed(seed, pair.name, copy))
            versions.append((f"{pair.name}_aug{copy}", new_xray, new_drr))
        for name, x_image, d_image in versions:
            write_png(folder / XRAY_DIR / f"{name}.png", to_uint(x_image, xray_bits))
            write_png(folder / DRR_DIR / f"{name}.png", to_uint(d_image, drr_bits))
            written += 1
    return {"input_pairs": len(pairs), "written_pairs": written}


def _png_bits(path: Path, bits: int) -> int:
    """DICOM inputs become 16-bit PNG; PNG inputs keep their depth."""
    return bits if path.suffix.lower() == ".png" else 16
