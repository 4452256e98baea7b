"""The run folder of `recon train`: checks, preparation, and the metrics.csv history.

    config.yaml            the resolved config
    checkpoints/           best.ckpt and last.ckpt (see checkpoints.py)
    metrics.csv            every logged value, every epoch (kept whole across resumes)
    tensorboard/           event files, with --logger tensorboard
    examples/              example grids, for tasks that draw them
    curves.png             training curves (see curves.py)
    run.json               command, version, seed, config, processes, timings, final metrics

Only global rank 0 checks and writes it; the other ranks skip it. A run that fails before its
first training step completes takes back what it added (remove_added).
"""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from recon.pipelines.common.errors import BadInput

if TYPE_CHECKING:
    from recon.pipelines.common.settings import RunOptions

RUN_OUTPUTS = ("config.yaml", "hparams.yaml", "metrics.csv", "curves.png", "run.json")
RUN_FOLDERS = ("checkpoints", "tensorboard", "examples")


def check_run_dir(run: RunOptions, command: str, inputs: tuple = ()) -> Path:
    """The run folder as an absolute path; a non-empty one is refused unless --overwrite or
    --resume, and with --overwrite unless it is a run folder of the same command ("train
    TASK"; outputs.check_replaceable): a folder of the user's files, or another command's
    outputs, would hold this run's run.json and then look like a run. A folder that is, or is
    inside, an input folder (the data) is refused even with --overwrite or --resume. With
    --overwrite, an input (the --config file, weights, the data) that clearing the run's
    outputs would delete (inside RUN_FOLDERS, or one of RUN_OUTPUTS) is refused too; the
    folder's own config.yaml given as --config is read before and written again. Reads only."""
    from recon.pipelines.common.inputs import check_apart
    from recon.pipelines.common.outputs import check_not_input, check_replaceable, check_writable

    out = Path(run.out).expanduser().absolute()
    check_apart(out, (), [p for p in (*run.inputs, *inputs) if Path(p).expanduser().is_dir()])
    if out.exists() and not out.is_dir():
        raise BadInput(f"{out}: exists and is not a folder")
    # the run makes the folders it lacks; one of them there as a file stops it (only after
    # the data and the model are set up, with a raw NotADirectoryError)
    above = next(p for p in out.parents if p.exists() or p == Path(p.anchor))
    if not above.is_dir():
        raise BadInput(f"{above}: is a file, not a folder (the run folder {out} would be in it)")
    writable = out if out.is_dir() else above
    check_writable(writable)  # found before the data and model are set up
    if out.is_dir() and any(out.iterdir()) and not (run.overwrite or run.resume):
        check_replaceable(out, command, marks=("config.yaml",))  # else --overwrite: refused too
        if (out / "run.json").is_file() and not (out / "checkpoints" / "last.ckpt").is_file():
            raise BadInput(
                f"{out}: holds a run without checkpoints/last.ckpt, which cannot be resumed "
                "(pass --overwrite to start it again)"
            )
        raise BadInput(
            f"{out}: run folder is not empty (pass --overwrite, or --resume a checkpoint)"
        )
    if out.is_dir() and run.overwrite and not run.resume:
        sources = [p for p in (*run.inputs, *inputs) if Path(p).absolute() != out / "config.yaml"]
        for doomed in (*RUN_FOLDERS, *RUN_OUTPUTS):
            check_not_input(out / doomed, sources)
        check_replaceable(out, command, marks=("config.yaml",))
    return out


def check_resume_dir(out: Path, checkpoint: Path, recorded: tuple[Path, ...] = ()) -> None:
    """A resume continues into its own run folder (RUN of RUN/checkpoints/CKPT, or the folder
    the checkpoint records it was written to, recorded) or into an empty or new folder; any
    other non-empty folder (another run's) is refused: the two runs' metrics.csv, checkpoints
    and run.json would mix. Reads only."""
    if not out.is_dir() or not any(out.iterdir()):
        return
    checkpoint = Path(checkpoint).expanduser().absolute()
    own = [checkpoint.parent.parent] if checkpoint.parent.name == "checkpoints" else []
    own += [Path(folder) for folder in recorded]
    if any(_same_folder(out, folder) for folder in own):
        return
    named = f" ({own[0]})" if own else ""
    raise BadInput(
        f"{out}: holds another run; --resume {checkpoint} continues only into its own run "
        f"folder{named} or into an empty or new folder"
    )


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except (OSError, RuntimeError):
        return False


def prepare_run_dir(out: Path, run: RunOptions, resumed_epoch: int | None) -> None:
    """Rank 0 only, after every check: create the folder; --overwrite clears the engine's own
    outputs; a resume keeps metrics.csv up to the checkpoint's epoch."""
    out.mkdir(parents=True, exist_ok=True)
    if resumed_epoch is not None:
        carry_over(out, Path(run.resume))
        trim_metrics(out / "metrics.csv", resumed_epoch)
        return
    for name in RUN_OUTPUTS:
        (out / name).unlink(missing_ok=True)
    for name in RUN_FOLDERS:
        if (out / name).is_dir():
            shutil.rmtree(out / name)


CARRIED = ("metrics.csv", "checkpoints/best.ckpt")  # what a run continued elsewhere takes along


def carry_over(out: Path, checkpoint: Path) -> None:
    """A run continued into a new or empty folder (check_resume_dir) takes its history from
    the folder of its checkpoint (RUN of RUN/checkpoints/last.ckpt): metrics.csv, and best.ckpt,
    so the best score so far stays and a worse epoch does not become the new folder's best."""
    from recon.pipelines.common.outputs import atomic_file

    checkpoint = Path(checkpoint).expanduser().absolute()
    if checkpoint.parent.name != "checkpoints" or _same_folder(out, checkpoint.parent.parent):
        return
    for name in CARRIED:
        source, target = checkpoint.parent.parent / name, out / name
        if source.is_file() and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_file(target) as tmp:
                shutil.copyfile(source, tmp)


def folder_entries(out: Path) -> set[str] | None:
    """The names in the run folder, or None when it does not exist (yet)."""
    return {p.name for p in out.iterdir()} if out.is_dir() else None


def missing_parents(out: Path) -> list[Path]:
    """The folders above out that do not exist (yet), nearest first: what creating it makes."""
    missing = []
    for parent in Path(out).parents:
        if parent.exists():
            break
        missing.append(parent)
    return missing


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove folders (missing_parents' order, nearest first) while each is empty: another run
    may have put something there since; the first that is not empty ends it."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty, or gone
            break


def remove_added(out: Path, before: set[str] | None, parents: list[Path] = ()) -> None:
    """Undo a run that failed before its first training step: remove the run folder if the run
    created it (before is None) and the parents it made for it (missing_parents), each while
    it is empty (another run may have put its folder there since); else only the entries it
    added; what was there stays."""
    if before is None:
        shutil.rmtree(out, ignore_errors=True)
        remove_empty_folders(parents)
        return
    for path in out.iterdir() if out.is_dir() else ():
        if path.name not in before:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def trim_metrics(metrics_csv: Path, last_epoch: int) -> None:
    """Keep the rows of epochs <= last_epoch (those after it are run again)."""
    import csv

    from recon.pipelines.common.outputs import atomic_file

    if not metrics_csv.is_file():
        return
    with metrics_csv.open(newline="") as handle:
        reader = csv.DictReader(handle)
        header, rows = reader.fieldnames or [], list(reader)
    kept = [r for r in rows if r.get("epoch") in ("", None) or float(r["epoch"]) <= last_epoch]
    if len(kept) == len(rows):
        return
    with atomic_file(metrics_csv) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(kept)


def run_loggers(out: Path, kind: str) -> list:
    """metrics.csv always; TensorBoard event files in out/tensorboard with --logger tensorboard."""
    from lightning.pytorch.loggers import CSVLogger

    loggers: list = [CSVLogger(out, name="", version="")]
    if kind == "tensorboard":
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(
            TensorBoardLogger(out, name="", version="tensorboard", default_hp_metric=False)
        )
    return loggers


@functools.cache
def history_writer_class():
    from lightning.pytorch.loggers.csv_logs import ExperimentWriter

    class HistoryWriter(ExperimentWriter):
        """Lightning's metrics.csv writer, appending to the file a resumed run kept instead of
        deleting it (prepare_run_dir decides what the file holds when training starts), and
        never leaving it half written: a stop (Ctrl-C, SIGTERM, a data worker's death) raised
        in the middle of a save leaves the file as it was, and the save Lightning makes on its
        way out writes the rows again. The stock writer truncated the file to rewrite it under
        a new header, so a stop there left a history without its header and no curves.png."""

        def _check_log_dir_exists(self) -> None:
            import csv

            if os.path.isfile(self.metrics_file_path):
                with open(self.metrics_file_path, newline="") as handle:
                    self.metrics_keys = list(next(csv.reader(handle), []))

        def save(self) -> None:
            import csv

            if not self.metrics:
                return
            path = Path(self.metrics_file_path)
            keys = sorted(set(self.metrics_keys).union(*self.metrics))
            if keys != self.metrics_keys or not path.is_file():
                _rewrite_history(path, keys, self.metrics)  # a new column: the whole file
            else:
                size = path.stat().st_size
                try:
                    with path.open("a", newline="") as handle:
                        csv.DictWriter(handle, fieldnames=keys).writerows(self.metrics)
                except BaseException:
                    os.truncate(path, size)  # no partial row for the next save to follow
                    raise
            self.metrics_keys, self.metrics = keys, []

    return HistoryWriter


def _rewrite_history(path: Path, keys: list[str], rows: list[dict]) -> None:
    """metrics.csv under the header keys: the rows it holds, then rows; replaced in one step."""
    import csv

    from recon.pipelines.common.outputs import atomic_file

    kept = []
    if path.is_file():
        with path.open(newline="") as handle:
            kept = list(csv.DictReader(handle))
    with atomic_file(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(kept + rows)
