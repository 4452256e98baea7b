"""Batch jobs over many inputs: shards (`--shard K/N`, or a SLURM job array) and --skip-done.

A shard is the K-th of N contiguous, balanced blocks of the input list (K counted from 1): the
blocks cover every input exactly once, so N jobs given the same inputs in the same order do the
whole list with no overlap and no gap. In a SLURM array the shard comes from the environment:
K = (SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN) / SLURM_ARRAY_TASK_STEP + 1 and
N = SLURM_ARRAY_TASK_COUNT, so `--array=0-9` and `--array=1-10` both give shards 1..10.

Batch mode (a shard of several, or --skip-done) writes into one shared output folder, each file
atomically, and each shard writes its own results file (run.shard-K-of-N.json). With --skip-done
an input whose outputs are all complete is skipped, so a pre-empted job rerun with the same
command picks up where it stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from recon.pipelines.common.errors import BadInput

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """Shard `number` of `count` (number counted from 1)."""

    number: int = 1
    count: int = 1

    @property
    def whole(self) -> bool:
        return self.count == 1

    def indices(self, total: int) -> range:
        """This shard's block of range(total): blocks differ in length by at most one."""
        return range((self.number - 1) * total // self.count, self.number * total // self.count)

    def take(self, items: Sequence[T]) -> list[T]:
        return [items[i] for i in self.indices(len(items))]

    def results_name(self, name: str = "run.json") -> str:
        """name for the whole list; NAME.shard-K-of-N.SUFFIX for a shard."""
        if self.whole:
            return name
        path = Path(name)
        return f"{path.stem}.shard-{self.number}-of-{self.count}{path.suffix}"

    def __str__(self) -> str:
        return f"{self.number}/{self.count}"


def parse_shard(text: str | None, env: Mapping[str, str] | None = None) -> Shard:
    """--shard K/N; without it, the SLURM array task's shard when one is set, else the whole."""
    if text is None or not text.strip():
        return shard_from_slurm(os.environ if env is None else env) or Shard()
    number, sep, count = text.strip().partition("/")
    if not (sep and number.isdigit() and count.isdigit()) or not 1 <= int(number) <= int(count):
        raise BadInput(f"--shard takes K/N with 1 <= K <= N (shard K of N, from 1), not {text!r}")
    return Shard(int(number), int(count))


def shard_from_slurm(env: Mapping[str, str]) -> Shard | None:
    """The shard of a SLURM array task, or None outside an array job. Without
    SLURM_ARRAY_TASK_COUNT the count comes from SLURM_ARRAY_TASK_MIN/MAX/STEP; a
    task id alone is refused (each task would otherwise make the whole set)."""
    if "SLURM_ARRAY_TASK_ID" not in env:
        return None
    if "SLURM_ARRAY_TASK_COUNT" not in env and not {
        "SLURM_ARRAY_TASK_MIN",
        "SLURM_ARRAY_TASK_MAX",
    } <= set(env):
        raise BadInput(
            "SLURM_ARRAY_TASK_ID is set without SLURM_ARRAY_TASK_COUNT (or _MIN and _MAX), so "
            "the number of shards is unknown; pass --shard K/N (1/1: the whole set)"
        )
    try:
        task = int(env["SLURM_ARRAY_TASK_ID"])
        first = int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
        step = int(env.get("SLURM_ARRAY_TASK_STEP", "1") or 1)
        if "SLURM_ARRAY_TASK_COUNT" in env:
            count = int(env["SLURM_ARRAY_TASK_COUNT"])
        else:
            count = (int(env["SLURM_ARRAY_TASK_MAX"]) - first) // max(step, 1) + 1
        last = int(env.get("SLURM_ARRAY_TASK_MAX", str(first + (count - 1) * step)))
    except ValueError as error:
        raise BadInput(f"SLURM array variables are not whole numbers ({error})") from error
    offset = task - first
    contiguous = step >= 1 and (last - first) == (count - 1) * step
    if not contiguous or offset % step or not 0 <= offset // step < count:
        raise BadInput(
            f"SLURM array task {task} (ids {first}..{last}, step {step}, {count} tasks) is not "
            "one of evenly spaced ids; pass --shard K/N"
        )
    return Shard(offset // step + 1, count)


def is_complete(paths: Sequence[Path]) -> bool:
    """Every path is a non-empty file (outputs are renamed into place, so one that exists is
    whole)."""
    return all(Path(p).is_file() and Path(p).stat().st_size > 0 for p in paths)


FUTURE_SLACK_S = 2.0  # an input dated this far past the clock is taken for clock skew


def changed_since(sources: Sequence[Path], outputs: Sequence[Path]) -> bool:
    """Whether a source file was modified after the oldest of the outputs that exist (an input
    edited or replaced in place since its outputs were made); False when either cannot be
    read."""
    try:
        changed = max(Path(p).stat().st_mtime_ns for p in sources)
        made = [Path(p).stat().st_mtime_ns for p in outputs if Path(p).is_file()]
    except (OSError, ValueError):
        return False
    return bool(made) and changed > min(made)


def refuse_another_input(result: Path, recorded, path: Path, made: str, what: str) -> None:
    """BadInput when an earlier result (file `result`) names `recorded` as its input and that is
    an existing file other than `path`: two inputs of one name in different folders, whose
    result --skip-done would keep for the wrong one. One that is gone (a folder since moved)
    cannot be told apart and is taken as the same. made: the result's verb ("measures"); what:
    the input's noun ("film")."""
    if not isinstance(recorded, str):
        return
    try:
        other = Path(recorded).is_file() and not Path(recorded).samefile(path)
    except OSError:
        return
    if other:
        article = "an" if what[0] in "aeioAEIOX" else "a"  # an X-ray, a film
        raise BadInput(
            f"{result}: {made} {recorded}, another {what} than {path} of the same name; "
            f"--skip-done keeps {article} {what}'s result only for that {what} (use another -o, "
            "or --overwrite without --skip-done)"
        )


def read_record(path: Path, kind: str, settings: Mapping[str, object]) -> dict | None:
    """An item's record (the JSON a generator writes last for each item) when it is of format
    `kind` and holds every key of settings with that value; None when it is missing,
    unreadable, of another format or made with other settings (--skip-done then redoes it)."""
    import json

    try:
        record = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("format") != kind:
        return None
    if any(record.get(key) != value for key, value in settings.items()):
        return None
    return record


def item_rng(seed: int, *key: int):
    """The random generator of one generated item, seeded by (seed, key) alone (numpy's
    SeedSequence spawn key), so an item is the same whichever shard makes it and however many
    items the set holds."""
    import numpy as np

    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=tuple(key)))


@dataclass
class BatchPlan:
    """What one shard does: indices into the full input list."""

    shard: Shard
    skip_done: bool
    todo: list[int] = field(default_factory=list)
    done: list[int] = field(default_factory=list)  # complete before this run: skipped
    # complete, but an input changed after its outputs were made: made again (in todo too)
    changed: list[int] = field(default_factory=list)
    # every input's output files, over the whole list (all shards): what the folder may hold
    outputs: list[Sequence[Path]] = field(default_factory=list)

    @property
    def batch(self) -> bool:
        """Whether outputs go straight into a shared folder (a shard, or --skip-done)."""
        return not self.shard.whole or self.skip_done

    def summary(self) -> dict:
        return {
            "shard": str(self.shard),
            "inputs": len(self.todo) + len(self.done),
            "done": len(self.todo),
            "skipped": len(self.done),
            "changed": len(self.changed),
        }


def plan_batch(
    total: int,
    outputs: Callable[[int], Sequence[Path]],
    shard: Shard,
    skip_done: bool,
    overwrite: bool,
    is_done: Callable[[int], bool] | None = None,
    sources: Callable[[int], Sequence[Path]] | None = None,
) -> BatchPlan:
    """Split this shard's inputs into to-do and already done; checks only, writes nothing.

    outputs(i) lists input i's output files; is_done(i) (default: all of them complete) says
    whether --skip-done may skip it. sources(i) lists input i's own files: one changed after
    the oldest of its outputs was written (make's rule, by modification time) is made again
    (plan.changed). In batch mode an existing output of an input to do is an error unless
    --overwrite or --skip-done (which redoes incomplete ones).
    """
    if skip_done and overwrite:  # --overwrite did nothing beside --skip-done
        raise BadInput(
            "--skip-done keeps finished outputs and --overwrite remakes them: give one "
            "(--overwrite alone makes every output again)"
        )
    plan = BatchPlan(shard, skip_done)
    plan.outputs = [outputs(i) for i in range(total)]
    done = is_done or (lambda i: is_complete(outputs(i)))
    for index in shard.indices(total):
        if skip_done and done(index):
            if sources is None or not changed_since(sources(index), outputs(index)):
                plan.done.append(index)
                continue
            plan.changed.append(index)
            _warn_of_the_future(sources(index))
        if plan.batch and not (overwrite or skip_done):
            existing = [p for p in outputs(index) if Path(p).exists()]
            if existing:
                raise BadInput(
                    f"{existing[0]}: already exists (pass --skip-done to keep finished outputs, "
                    "or --overwrite)"
                )
        plan.todo.append(index)
    return plan


def _warn_of_the_future(sources: Sequence[Path]) -> None:
    """A warning line for an input dated in the future (a file server's clock ahead of this
    one): it stays newer than what is made from it, so --skip-done makes it again on every run
    until the clock passes it (make's rule and make's warning)."""
    import sys
    import time

    now = time.time()
    for path in sources:
        try:
            ahead = Path(path).stat().st_mtime - now
        except OSError:
            continue
        if ahead > FUTURE_SLACK_S:
            sys.stderr.write(
                f"warning: {path} is dated {_duration(ahead)} in the future (clock skew?): "
                "--skip-done makes its outputs again on every run until the clock passes it\n"
            )
            return


def _duration(seconds: float) -> str:
    """'40 s', '12 min', '3.5 h'."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def check_batch_output(out: Path, plan: BatchPlan, overwrite: bool, command: str) -> Path:
    """The output folder as an absolute path, checked before any work: a whole, unsharded run
    refuses an existing one unless --overwrite; batch mode shares it but refuses this shard's
    existing results file unless --overwrite or --skip-done."""
    from recon.pipelines.common.outputs import check_output, check_same_command

    out = Path(out).expanduser().absolute()
    if not plan.batch:
        return check_output(out, overwrite, command=command)
    if out.exists() and not out.is_dir():
        raise BadInput(f"{out}: exists and is not a folder")
    if not out.parent.exists():
        raise BadInput(f"{out.parent}: output folder does not exist")
    if out.is_dir():
        check_same_command(out, command)
        _refuse_foreign_folder(out, plan, command)
    results = out / plan.shard.results_name()
    if results.exists() and not (overwrite or plan.skip_done):
        raise BadInput(f"{results}: already exists (pass --skip-done or --overwrite)")
    return out


def _refuse_foreign_folder(out: Path, plan: BatchPlan, command: str) -> None:
    """BadInput for a folder of the user's files: no run record, and none of its visible
    entries is an output this batch names (a shard running beside this one has written at
    least the first folder or file of an item before its record). Written into, it would get a
    run record and then pass for an earlier output, which --overwrite replaces whole."""
    from recon.pipelines.common.outputs import RUN_RECORDS, unowned

    if any(next(out.glob(pattern), None) for pattern in RUN_RECORDS):
        return
    visible = sorted(p for p in out.iterdir() if not p.name.startswith("."))
    named = {
        Path(path).relative_to(out).parts[0]
        for paths in plan.outputs
        for path in paths
        if Path(path).is_relative_to(out)
    }
    if visible and not any(p.name in named for p in visible):
        raise BadInput(
            f"{out}: holds {unowned(visible)}; shards and --skip-done write only into a new "
            f"or empty folder or an earlier output of `recon {command}`: choose another path"
        )


@contextlib.contextmanager
def output_folder(out: Path, plan: BatchPlan) -> Iterator[Path]:
    """Where to write: in batch mode the shared folder itself (every file written atomically;
    made here, it goes again if the command fails before writing into it; a stop's line says
    that what was made stays), otherwise a
    temporary folder that takes out's place when all is done (a stop there keeps nothing, and
    its line says how many files went with it: stops.STOP_NOTES)."""
    from recon.pipelines.common.outputs import atomic_dir
    from recon.pipelines.common.stops import STOP_NOTES

    if plan.batch:
        made = not out.exists()
        out.mkdir(exist_ok=True)
        try:
            yield out
        except BaseException as error:
            if made:
                with contextlib.suppress(OSError):
                    out.rmdir()  # only when still empty
            if isinstance(error, KeyboardInterrupt) and out.exists():
                STOP_NOTES.append(
                    f"the outputs made so far are kept in {out}; the same command with "
                    "--skip-done makes the rest"
                )
            raise
        return
    with atomic_dir(out) as folder:
        try:
            yield folder
        except KeyboardInterrupt:  # Ctrl-C, and SIGTERM as the CLI raises it
            made = sum(1 for path in folder.rglob("*") if path.is_file())
            if made:
                files = f"{made} file{'s' * (made > 1)}"
                STOP_NOTES.append(
                    f"the {files} made so far not kept; with --skip-done each output stays as it "
                    "is made"
                )
            raise


@dataclass
class BatchInputs:
    """Inputs gathered and planned for a batch command (see plan_inputs)."""

    files: list[Path]  # every input, in order (all shards)
    names: list[str]  # each input's output name, decided from the whole list
    plan: BatchPlan  # this shard's inputs to do and already done
    out: Path  # the checked output folder
    checkpoint_sha256: str | None = None  # the checkpoint's digest, for the run record's config


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, in hex."""
    import hashlib

    with Path(path).open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def check_same_checkpoint(out: Path, command: str, digest: str, checkpoint: Path) -> None:
    """--skip-done keeps the outputs of one model only: the command's run records in out
    (outputs.run_records) that name a checkpoint digest (config checkpoint_sha256) must name
    this one's."""
    from recon.pipelines.common.outputs import run_records

    for record, doc in run_records(out, command):
        config = doc.get("config") if isinstance(doc.get("config"), dict) else {}
        earlier = config.get("checkpoint_sha256")
        if not earlier or earlier == digest:
            continue
        named = config.get("checkpoint")
        if isinstance(named, str) and _same(named, str(checkpoint)):
            made = f"{checkpoint} has changed since its outputs were made ({record.name})"
        else:
            made = f"its outputs came from checkpoint {named} ({record.name}), another file than "
            made += str(checkpoint)
        raise BadInput(
            f"{out}: {made}; --skip-done would mix the two models' outputs (write to another "
            "folder, or --overwrite without --skip-done)"
        )


def check_same_settings(
    out: Path,
    command: str,
    settings: dict,
    flags: dict[str, str],
    replaced: str | None = None,
    advice: str | None = None,
) -> None:
    """BadInput when a run record of `command` in OUT states one of `settings` (keys of its
    config) with another value: the outputs it made would be kept as if made with these.
    flags names each setting for the message (e.g. {"size": "--size"}); a record that does not
    state a setting is not compared on it; two names of one existing file (relative and
    absolute, through a link) are one setting. replaced: a record not compared (the one this
    run replaces); advice: the message's end, in place of refuse_other_settings' own."""
    from recon.pipelines.common.outputs import run_records

    for record, doc in run_records(out, command):
        if record.name != replaced:
            refuse_other_settings(
                doc.get("config"),
                settings,
                flags,
                f"{out}: its outputs were",
                f"in {record.name}",
                *([advice] if advice else []),
            )


def check_kept_settings(
    out: Path, command: str, settings: dict, flags: dict[str, str], plan: BatchPlan, overwrite: bool
) -> None:
    """check_same_settings wherever earlier outputs stay beside this run's: a batch run (a shard,
    or --skip-done). A shard's --overwrite replaces its own outputs only, so only its own run
    record is not compared: the other shards' outputs stay, and a set of two sizes would pass
    for one."""
    if not plan.batch:
        return
    if plan.skip_done or not overwrite:
        check_same_settings(out, command, settings, flags)
        return
    check_same_settings(
        out,
        command,
        settings,
        flags,
        replaced=plan.shard.results_name(),
        advice="a shard's --overwrite replaces its own outputs only (give the same settings, "
        "or remove the folder or use another -o to make the set again)",
    )


def refuse_other_settings(
    recorded,
    settings: dict,
    flags: dict[str, str],
    made: str,
    source: str = "in it",
    advice: str = "--skip-done and shards only add to outputs made the same way (give the same "
    "settings, use another -o, or --overwrite without --skip-done)",
) -> None:
    """BadInput "<made> made with other settings (--size 64 here, 128 <source>); <advice>"
    when `recorded` (settings as a JSON file kept them) states one of `settings` with another
    value; a key it does not state is not compared, nor is anything but a dict. A setting that
    is a dict is shown by the entries that differ, each named flags["KEY.ENTRY"]; of two
    changes under one flag (a width that follows --size) the first is shown."""
    wanted = json.loads(json.dumps(settings))  # as JSON reads back (tuples as lists)
    recorded = recorded if isinstance(recorded, dict) else {}
    differ = [k for k, v in wanted.items() if k in recorded and not _same(recorded[k], v)]
    if differ:
        changes: dict[str, tuple[str, Any, Any]] = {}  # by flag: its first change
        for key in differ:
            here, there = wanted[key], recorded[key]
            rows = [(flags.get(key, key), here, there)]
            if isinstance(here, dict) and isinstance(there, dict):  # name the parts that differ
                parts = [k for k in here if k in there and not _same(there[k], here[k])]
                rows = [(flags.get(f"{key}.{k}", k), here[k], there[k]) for k in parts] or rows
            for row in rows:
                changes.setdefault(row[0], row)
        shown = setting_changes(list(changes.values()), source)
        raise BadInput(f"{made} made with other settings ({shown}); {advice}")


def setting_changes(changes: list[tuple[str, Any, Any]], source: str) -> str:
    """The changes as "--seed 3 here, 1 in run.json; ...", from (setting, value here, value
    recorded) triples; source says where the recorded values are ("in run.json")."""

    def shown(value) -> str:
        return value if isinstance(value, str) else json.dumps(value)

    return "; ".join(
        f"{name} {shown(here)} here, {shown(there)} {source}" for name, here, there in changes
    )


def earlier_results(out: Path, command: str, key: str, field: str = "results") -> dict[str, dict]:
    """The result entries (metrics[field]) of the run records of `command` in out, by the file
    name of each entry's `key` path ("grid": ".../a.npy" -> "a.npy"); a newer record's entry
    wins. What a --skip-done run carries over for the inputs it skips."""
    from recon.pipelines.common.outputs import run_records

    def age(item: tuple[Path, dict]) -> int:
        with contextlib.suppress(OSError):
            return item[0].stat().st_mtime_ns
        return 0

    found: dict[str, dict] = {}
    for _, doc in sorted(run_records(out, command), key=age):
        metrics = doc.get("metrics") if isinstance(doc.get("metrics"), dict) else {}
        entries = metrics.get(field)
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict) and isinstance(entry.get(key), str):
                found[Path(entry[key]).name] = entry
    return found


def existing_files(paths: Mapping[str, Path]) -> dict[str, str | None]:
    """{key: the path as text where that file is there, else None}: a skipped input's outputs
    listed from the folder when no earlier record names them."""
    return {key: str(path) if Path(path).is_file() else None for key, path in paths.items()}


def every_result(plan: BatchPlan, made: Sequence[dict], skipped: Callable[[int], dict]) -> list:
    """This shard's results in input order: those made now (one per plan.todo, in its order)
    and, for each input skipped as done, skipped(index) marked "skipped": true; so a --skip-done
    run's record still maps every input to its files."""
    now = dict(zip(plan.todo, made, strict=True))
    return [
        now[i] if i in now else {**skipped(i), "skipped": True}
        for i in sorted([*plan.todo, *plan.done])
    ]


def recorded_path(path: Path | str | None) -> str | None:
    """A path as a run record keeps a setting: absolute, so that check_same_settings compares
    a rerun from another folder (None stays None)."""
    return None if path is None else str(Path(path).expanduser().absolute())


def _same(recorded, wanted) -> bool:
    """Whether a recorded setting is the wanted one: equal, or both name one existing file."""
    if recorded == wanted:
        return True
    if not (isinstance(recorded, str) and isinstance(wanted, str)):
        return False
    try:
        return os.path.samefile(Path(recorded).expanduser(), Path(wanted).expanduser())
    except (OSError, ValueError):
        return False


def file_suffix(path: Path) -> str | None:
    """The suffix of an output folder's path when it names a file (chair.stl, views.png,
    a.json: a suffix of the meshes, pictures, DICOMs, arrays and tables recon reads or writes)
    and no folder of that name exists; else None. What a command asked for a folder then
    made, a folder named as a file, the user meant as the file."""
    from recon.pipelines.common.dicom import DICOM_SUFFIXES
    from recon.pipelines.common.io import MESH_SUFFIXES, PICTURE_SUFFIXES

    suffix = Path(path).suffix
    named = (*MESH_SUFFIXES, *PICTURE_SUFFIXES, *DICOM_SUFFIXES, ".npy", ".npz", ".json", ".csv")
    if suffix.lower() in named and not Path(path).expanduser().is_dir():
        return suffix
    return None


def check_folder_name(out: Path) -> None:
    """BadInput when a batch command's -o, an output folder, is named as a file (file_suffix):
    the command made a folder of that name, holding the outputs, where the user asked for a
    file."""
    suffix = file_suffix(out)
    if suffix is not None:
        raise BadInput(
            f"{out}: names a {suffix} file, but -o is an output folder (each input's "
            "files go in it, named after the input): give it a name without a file suffix"
        )


def plan_inputs(
    paths: Sequence[Path],
    accept: Callable[[Path], bool],
    what: str,
    out: Path,
    outputs: Callable[[Path, str], Sequence[Path]],
    batch: tuple[str | None, bool, bool],
    *,
    command: str,
    checkpoint: Path | None = None,
    settings: tuple[dict, dict[str, str]] | None = None,
    is_done: Callable[[Path, str], bool] | None = None,
    stem: Callable[[Path], str] = lambda path: path.stem,
    reserved: Callable[[str], bool] = lambda name: False,
) -> BatchInputs:
    """Everything a batch command checks before any work, in one order: the inputs (files and
    folders, recon.pipelines.common.inputs), their output names, the checkpoint (when given),
    an output folder apart from every input, this shard's plan and the output folder itself.

    outputs(target, name) and is_done(target, name) describe one input's outputs in the output
    folder `target`; batch is (--shard, --skip-done, --overwrite); command names the command as
    its run record does (check_output); stem and reserved are output_names' (an input's first
    name, and the names the command keeps for its own files). With a checkpoint, its digest
    comes back for the command's run record, and --skip-done refuses a folder whose records
    name another (check_same_checkpoint). settings: (the settings that shape the outputs, their
    flags); outputs kept or added beside earlier ones must have been made with the same
    (check_same_settings)."""
    from recon.pipelines.common.checkpoints import require_checkpoint_file
    from recon.pipelines.common.inputs import check_apart, gather_inputs, output_names

    shard, skip_done, overwrite = batch
    files, folders = gather_inputs(paths, accept, what)
    names = output_names(files, stem, reserved)  # the whole list: every shard names files alike
    others, digest = [], None
    if checkpoint is not None:
        others.append(require_checkpoint_file(Path(checkpoint)))
    check_apart(out, [*files, *others], folders)
    check_folder_name(out)  # after check_apart: an -o that is an input says that first
    target = Path(out).expanduser().absolute()
    if checkpoint is not None:
        digest = file_sha256(Path(checkpoint))
        if skip_done and target.is_dir():
            check_same_checkpoint(target, command, digest, Path(checkpoint))
    plan = plan_batch(
        len(files),
        lambda i: outputs(target, names[i]),
        parse_shard(shard),
        skip_done,
        overwrite,
        is_done=None if is_done is None else (lambda i: is_done(target, names[i])),
        sources=lambda i: [files[i]],
    )
    out = check_batch_output(out, plan, overwrite, command)
    if settings is not None:
        check_kept_settings(out, command, *settings, plan, overwrite)
    return BatchInputs(files, names, plan, out, digest)
