"""`recon augment`: a paired X-ray / DRR set -> augmented pairs, both sides moved alike."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recon.cli.common import Json, Overwrite, Quiet, Reporter, Seed, key_value_table

GEOMETRY = "Geometric (both sides)"
PHOTOMETRY = "Photometric (X-ray side only)"


def augment(
    source: Annotated[Path, typer.Argument(help="Pair set: SOURCE/xray/NAME and SOURCE/drr/NAME.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output folder (xray/ + drr/).")],
    copies: Annotated[int, typer.Option(min=1, help="Augmented copies per pair.")] = 4,
    originals: Annotated[
        bool, typer.Option("--originals/--no-originals", help="Also copy the input pairs.")
    ] = True,
    flip: Annotated[
        float,
        typer.Option(min=0, max=1, help="Horizontal flip probability.", rich_help_panel=GEOMETRY),
    ] = 0.5,
    rotate: Annotated[
        float, typer.Option(min=0, help="Rotation range, +- degrees.", rich_help_panel=GEOMETRY)
    ] = 10.0,
    scale: Annotated[
        float,
        typer.Option(min=0, max=0.9, help="Zoom range, 1 +- SCALE.", rich_help_panel=GEOMETRY),
    ] = 0.1,
    translate: Annotated[
        float,
        typer.Option(
            min=0, max=0.5, help="Shift range, +- fraction of size.", rich_help_panel=GEOMETRY
        ),
    ] = 0.05,
    crop: Annotated[
        float,
        typer.Option(
            min=0.1,
            max=1,
            help="Smallest crop area fraction (1 = no crop).",
            rich_help_panel=GEOMETRY,
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
        typer.Option(min=0, max=1, help="+- brightness fraction.", rich_help_panel=PHOTOMETRY),
    ] = 0.15,
    contrast: Annotated[
        float, typer.Option(min=0, max=1, help="+- contrast fraction.", rich_help_panel=PHOTOMETRY)
    ] = 0.15,
    noise: Annotated[
        float,
        typer.Option(
            min=0,
            max=1,
            help="Largest noise std (fraction of full scale).",
            rich_help_panel=PHOTOMETRY,
        ),
    ] = 0.02,
    seed: Seed = 0,
    overwrite: Overwrite = False,
    json_out: Json = False,
    quiet: Quiet = False,
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
    source = Path(source)
    out = check_output(out, overwrite)
    if out == source.absolute() or source.absolute() in out.parents:
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
