"""Shards and --skip-done for `recon synth pix3d|parts|corset|xray|skull`: items made one by
one, an index merged by whichever run finds the last item finished."""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recon.cli.common import Reporter


@dataclass
class SynthSet:
    """How a generated set is made item by item. Paths are under a data root ROOT."""

    kind: str  # "pix3d", for messages and the run record
    count: int  # items in the whole set
    unit: str  # what an item is, plural: "models"
    outputs: Callable[[Path, int], list[Path]]  # (ROOT, i) -> the files item i may write
    done: Callable[[Path, int], bool]  # (ROOT, i) -> item i is whole, made with these settings
    make: Callable[[Path, int], Any]  # (ROOT, i) -> writes item i, returns its summary
    index: str | None = None  # the index file ("pix3d.json"), None when the set has none
    merge: Callable[[Path], tuple[Path | None, int]] = field(
        default=lambda _root: (None, 0)
    )  # ROOT -> (the index written, or None; items still missing)
    config: dict = field(default_factory=dict)
    summarize: Callable[[list], dict] = field(
        default=lambda _made: {}
    )  # the summaries of the items made -> the counts the command reports (and run.json holds)
    inputs: list[Path | None] = field(default_factory=list)  # files OUT may never be or hold
    flags: dict[str, str] = field(default_factory=dict)  # config key -> its flag, for messages


def _check_same_set(out: Path, spec: SynthSet, seed: int, sharded: bool = False) -> None:
    """--skip-done completes the set the folder's run records describe: the same seed and
    settings (another would remake every item, deleting the earlier ones without --overwrite),
    and a count it may grow (its index then lists the new items too) but not shrink (the items
    past the new count would stay in the folder, outside the index, and readers that list the
    folder, a skull set's, would take them). A shard (sharded) adds its part to that set: the
    same seed, settings and count (another count splits the set otherwise)."""
    import json

    from recon.pipelines.common.batch import setting_changes
    from recon.pipelines.common.errors import BadInput
    from recon.pipelines.common.outputs import run_records

    settings = json.loads(json.dumps({k: v for k, v in spec.config.items() if k != "count"}))
    asked = int(spec.config["count"])  # as the command line counts (models per class, ...)
    for record, data in run_records(out, f"synth {spec.kind}"):
        try:
            config, earlier = data["config"], int(data["config"]["count"])
        except (KeyError, TypeError, ValueError):
            continue
        made = {k: v for k, v in config.items() if k != "count"}
        if data.get("seed") != seed or made != settings:
            changes = [("--seed", seed, data.get("seed"))] if data.get("seed") != seed else []
            changes += [
                (spec.flags.get(k, k), settings.get(k), made.get(k))
                for k in sorted(set(made) | set(settings))
                if made.get(k) != settings.get(k) and not (k == "seed" and changes)
            ]
            raise BadInput(
                f"{out}: its {spec.unit} were made with other settings "
                f"({setting_changes(changes, f'in {record.name}')}); --skip-done and shards "
                "only complete a set made the same way (give the same settings, another -o, "
                "or --overwrite without --skip-done or --shard to remake it)"
            )
        if sharded and earlier != asked:
            raise BadInput(
                f"{out}: holds a set of {earlier} {spec.unit} ({record.name}); its shards "
                f"must all ask for {earlier} (another count splits the set otherwise)"
            )
        if earlier > asked:
            raise BadInput(
                f"{out}: holds a set made with the count {earlier} ({record.name}); --skip-done "
                f"with {asked} would leave some of its {spec.unit} outside the set (give the "
                f"count {earlier}, or --overwrite)"
            )


def run_synth(
    spec: SynthSet,
    out: Path,
    seed: int,
    shard: str | None,
    skip_done: bool,
    overwrite: bool,
    ui: Reporter,
) -> tuple[Path, list, dict]:
    """Make this shard's items of spec into out (checked before any work); returns (out, the
    summaries of the items made, the result fields: spec.summarize's counts, the index and the
    items still missing when the set has an index, shard counts), which run.json records too."""
    import time

    from recon.pipelines.common.batch import (
        check_batch_output,
        output_folder,
        parse_shard,
        plan_batch,
    )
    from recon.pipelines.common.outputs import check_not_input, run_record, write_json

    target = Path(out).expanduser().absolute()
    check_not_input(target, spec.inputs)
    sharded = not parse_shard(shard).whole
    if skip_done or sharded:
        _check_same_set(target, spec, seed, sharded)
    plan = plan_batch(
        spec.count,
        lambda i: spec.outputs(target, i),
        parse_shard(shard),
        skip_done,
        overwrite,
        is_done=lambda i: spec.done(target, i),
    )
    out = check_batch_output(out, plan, overwrite, f"synth {spec.kind}")
    made = []
    clock = time.perf_counter()
    with output_folder(out, plan) as folder:
        for index in ui.track(plan.todo, f"synth {spec.kind}"):
            made.append(spec.make(folder, index))
        index_path, missing = spec.merge(folder)
        fields = spec.summarize(made)
        if spec.index is not None:
            fields["index"] = str(out / index_path.relative_to(folder)) if index_path else None
            fields["missing_items"] = missing
        fields |= plan.summary()
        timings = {"synth": time.perf_counter() - clock}
        record = run_record(f"synth {spec.kind}", seed, spec.config, timings, fields)
        write_json(folder / plan.shard.results_name(), record)
    if missing:
        ui.info(
            f"{spec.index} is not written yet: {missing} of {spec.count} {spec.unit} are still to "
            "be made by the other shards (the run that finishes the set writes it)"
        )
    return out, made, fields
