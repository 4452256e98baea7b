"""`recon augment`: a paired X-ray / DRR set -> augmented pairs, both sides moved alike."""

from pathlib import Path
from typing import Annotated

import typer

from recon.cli.common import (
    Json,
    Overwrite,
    Quiet,
    Reporter,
    Seed,
    check_range,
    check_seed,
    key_value_table,
    renamed,
)

RANGES = {  # option -> (low, high), checked before any work
    "copies": (1, 1000),
    "flip": (0.0, 1.0),
    "rotate": (0.0, 180.0),
    "scale": (0.0, 0.9),
    "translate": (0.0, 0.5),
    "crop-area": (0.1, 1.0),
    "brightness": (0.0, 1.0),
    "contrast": (0.0, 1.0),
    "noise": (0.0, 1.0),
}

GEOMETRY = "Geometric (both sides)"
PHOTOMETRY = "Photometric (X-ray side only)"


def augment(
    source: Annotated[Path, typer.Argument(help="Pair set: SOURCE/xray/NAME and SOURCE/drr/NAME.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output folder (xray/ + drr/).")],
    copies: Annotated[int, typer.Option(help="Augmented copies per pair, 1 to 1000.")] = 4,
    originals: Annotated[
        bool, typer.Option("--originals/--no-originals", help="Also copy the input pairs.")
    ] = True,
    flip: Annotated[
        float,
        typer.Option(help="Horizontal flip probability, 0 to 1.", rich_help_panel=GEOMETRY),
    ] = 0.5,
    rotate: Annotated[
        float,
        typer.Option(help="Rotation range, +- degrees, 0 to 180.", rich_help_panel=GEOMETRY),
    ] = 10.0,
    scale: Annotated[
        float,
        typer.Option(help="Zoom range, 1 +- SCALE, 0 to 0.9.", rich_help_panel=GEOMETRY),
    ] = 0.1,
    translate: Annotated[
        float,
        typer.Option(help="Shift range, +- fraction of size, 0 to 0.5.", rich_help_panel=GEOMETRY),
    ] = 0.05,
    crop_area: Annotated[
        float,
        typer.Option(
            help="Smallest crop area fraction, 0.1 to 1 (1 = no crop).", rich_help_panel=GEOMETRY
        ),
    ] = 0.85,
    photometric: Annotated[
        bool,
        typer.Option(
            "--photometric/--no-photometric",
            help="Brightness, contrast, gamma, blur, noise.",
            rich_help_panel=PHOTOMETRY,
        ),
    ] = True,
    brightness: Annotated[
        float,
        typer.Option(help="+- brightness fraction, 0 to 1.", rich_help_panel=PHOTOMETRY),
    ] = 0.15,
    contrast: Annotated[
        float,
        typer.Option(help="+- contrast fraction, 0 to 1.", rich_help_panel=PHOTOMETRY),
    ] = 0.15,
    noise: Annotated[
        float,
        typer.Option(
            help="Largest noise std, fraction of full scale, 0 to 1.", rich_help_panel=PHOTOMETRY
        ),
    ] = 0.02,
    seed: Seed = 0,
    overwrite: Overwrite = False,
    json_out: Json = False,
    quiet: Quiet = False,
    old_crop: Annotated[float | None, typer.Option("--crop", hidden=True)] = None,
) -> None:
    """Augment a paired X-ray / DRR set: one geometric draw for both images of a pair
    (flip, rotation, zoom, shift, crop), intensity changes on the X-ray only.

    Copy K of NAME is written as xray/NAME_augK.png and drr/NAME_augK.png; the input is never
    modified. PNG bit depth is kept (DICOM becomes 16-bit PNG). The same --seed gives the same
    output.

    Example: recon augment pairs -o pairs_aug --copies 8 --seed 1
    """
    import time

    from recon.pipelines.common.errors import BadInput
    from recon.pipelines.common.outputs import atomic_dir, check_output, run_record, write_json
    from recon.pipelines.xray.augment import AugmentConfig, augment_pairs
    from recon.pipelines.xray.pairs import find_pairs

    ui = Reporter(json_out, quiet)
    # --crop is register's pixels; the area share was --crop here until this release
    crop, crop_flag = renamed("--crop", "--crop-area", old_crop, crop_area)
    given = {"copies": copies, "flip": flip, "rotate": rotate, "scale": scale}
    given |= {"translate": translate, "crop-area": crop, "brightness": brightness}
    given |= {"contrast": contrast, "noise": noise}
    for name, (low, high) in RANGES.items():
        check_range(crop_flag if name == "crop-area" else f"--{name}", given[name], low, high)
    check_seed(seed)
    source = Path(source)
    out = check_output(out, overwrite, inputs=[source], command="augment")
    if source.resolve() == out.resolve() or source.resolve() in out.resolve().parents:
        raise BadInput(f"{out}: output must not be the input folder or inside it")
    find_pairs(source)  # every layout problem is reported before work starts
    config = AugmentConfig(
        copies=copies,
        originals=originals,
        flip=flip,
        rotate=rotate,
        scale=scale,
        translate=translate,
        crop=crop,
        photometric=photometric,
        brightness=brightness,
        contrast=contrast,
        noise=noise,
    )
    clock = time.perf_counter()
    with atomic_dir(out) as folder:
        counts = augment_pairs(source, folder, config, seed, ui.track)
        timings = {"augment": time.perf_counter() - clock}
        write_json(
            folder / "run.json", run_record("augment", seed, config.as_dict(), timings, counts)
        )
    result = {"out": str(out), **counts, "seed": seed, "timings_s": timings}
    ui.result(
        result,
        key_value_table(
            f"augment {source}",
            [
                ("input pairs", counts["input_pairs"]),
                ("written pairs", counts["written_pairs"]),
                ("out", out),
                ("seconds", timings["augment"]),
            ],
        ),
    )
