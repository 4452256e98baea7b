"""Safe outputs: refuse to clobber, write beside the target, rename into place, record run.json.

Temporary files and folders are created with the modes the user's umask gives (not mkstemp's
0600 / mkdtemp's 0700), and every one still present when a command is interrupted (Ctrl-C,
SIGTERM) is removed by `remove_temporaries`, which the CLI calls on its way out. One that a
killed command left (SIGKILL, the OOM killer, a node lost) is named for its host and process
(`.d.HOST.PID.RANDOM.png` for d.png, `.v.HOST.PID.RANDOM` for folder v): the next temporary
made for the same target removes it once that process is gone (remove_stale_temporaries).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from recon.pipelines.common.errors import FULL_DISK, BadInput

_LIVE: set[Path] = set()  # temporaries created here and not yet renamed into place or removed
_LIVE_LOCK = threading.Lock()  # a temporary is in _LIVE from the moment it exists (_pid_alive)
# this host in temporaries' names: the first label of its name, in letters, digits and dashes
HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0])[:32] or "localhost"
FOREIGN_WARNING_S = 24 * 3600  # another host's temporary older than this gets a warning line
_HIDDEN: dict[Path, list[str]] = {}  # per folder, its hidden entries not yet dealt with


def check_output(
    path: Path,
    overwrite: bool,
    suffixes: tuple[str, ...] | None = None,
    inputs: Iterable[Path | None] = (),
    command: str | None = None,
) -> Path:
    """Validate an output path before any work starts; returns it as an absolute Path.

    An output that is one of `inputs`, or a folder holding one, is refused even with --overwrite
    (replacing it would destroy the input). `command` (as its run record names it, e.g.
    "predict drr") marks a folder output, which --overwrite replaces whole: an existing file
    there, or a folder that is not empty nor an earlier output of that command
    (check_replaceable), is refused even with --overwrite.
    """
    path = Path(path).expanduser().absolute()
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise BadInput(f"{path}: output must end in one of {', '.join(suffixes)}")
    check_not_input(path, inputs)
    # a folder output over a file or link: --overwrite would not help, so said first
    if command is not None and (path.is_symlink() or (path.exists() and not path.is_dir())):
        raise BadInput(f"{path}: exists and is not a folder; choose another path")
    # where --overwrite would be refused too, that is said first, not "pass --overwrite"
    if suffixes is not None and path.is_dir():
        raise BadInput(f"{path}: is a folder, not a file; choose another path")
    if command is not None and path.exists():
        check_replaceable(path, command)
    if path.exists() and not overwrite:
        raise BadInput(f"{path}: already exists (pass --overwrite to replace it)")
    if not path.parent.exists():
        raise BadInput(f"{path.parent}: output folder does not exist")
    if not path.parent.is_dir():
        raise BadInput(f"{path.parent}: is a file, not a folder")
    check_writable(path.parent)
    return path


def check_writable(folder: Path) -> None:
    """BadInput unless recon may make files in folder: its permission bits, which pass root,
    and the file system it lies on, which must not be one of the kernel's views
    (PSEUDO_FILE_SYSTEMS: /proc or /sys refuse the file only, after the work)."""
    if not os.access(folder, os.W_OK | os.X_OK):
        raise BadInput(f"{folder}: output folder is not writable")
    kind = file_system(folder)
    if kind in PSEUDO_FILE_SYSTEMS:
        raise BadInput(
            f"{folder}: output folder is not writable (a {kind} file system: the kernel's view "
            "of itself)"
        )


# the kernel's views of itself: a file cannot be made there, or a write means something else
PSEUDO_FILE_SYSTEMS = frozenset(
    ("proc", "sysfs", "cgroup", "cgroup2", "devpts", "debugfs", "tracefs", "securityfs")
    + ("pstore", "bpf", "configfs", "fusectl", "mqueue", "efivarfs", "binfmt_misc", "nsfs")
)


def file_system(folder: Path, table: str | None = None) -> str | None:
    """The type of the file system folder lies on (ext4, tmpfs, proc, ...), as the mount table
    (table, else /proc/self/mounts) says of its innermost mount; None where there is none."""
    if table is None:
        try:
            table = Path("/proc/self/mounts").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
    place = os.path.realpath(folder)
    found, depth = None, -1
    for line in table.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), fields[1])  # \040: space
        inside = place == point or place.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= depth:  # a later mount on the same point covers the earlier
            found, depth = fields[2], len(point)
    return found


def check_not_input(path: Path, inputs: Iterable[Path | None]) -> Path:
    """BadInput when the output path is one of `inputs`, or a folder holding one (see
    check_output); the absolute path otherwise."""
    from recon.pipelines.common.inputs import both_places

    path = Path(path).expanduser().absolute()
    for source in inputs:
        if source is not None and _covers(path, Path(source)):
            inside = "" if path in both_places(Path(source)) else " (the output folder holds it)"
            raise BadInput(
                f"{path}: output would replace the input {source}{inside}; choose another path"
            )
    return path


RUN_RECORDS = ("run.json", "run.shard-*-of-*.json")  # what every output folder holds


def check_replaceable(folder: Path, command: str, marks: tuple[str, ...] = ()) -> None:
    """BadInput unless `recon COMMAND --overwrite` may replace or rewrite the folder: it is
    empty, or an earlier output of that same command (its run records, RUN_RECORDS, name it;
    a file of `marks` also marks one, for a run that has not written its record yet). A folder
    of other files (the working folder given as `-o .`, notes, data) or of another command's
    outputs (a training run given to a predict command) is never deleted."""
    entries = sorted(folder.iterdir())
    if not entries:
        return
    if not _run_records(folder):
        if any((folder / mark).is_file() for mark in marks):
            return
        check_outside_runs(folder)  # one input's folder of a run's output (reg/xray_000)
        raise BadInput(
            f"{folder}: holds {unowned(entries)}; --overwrite replaces only an empty folder "
            f"or an earlier output of `recon {command}`: choose another path"
        )
    check_same_command(folder, command)


# commands whose --overwrite writes into their output folder and keeps what they do not write
MERGING = ("convert-mat",)


def check_outside_runs(path: Path) -> None:
    """BadInput when path lies inside the output folder of a recon run (a folder above it whose
    run records, RUN_RECORDS, name a command), as given or with links followed: that run's
    --overwrite would delete it. A training run's deletes only its own entries
    (runfolder.RUN_OUTPUTS and RUN_FOLDERS), so a path beside them (predictions kept in the run
    folder) is accepted, and so is any path in the output of a command whose --overwrite writes
    into its folder, keeping what it does not write (MERGING: convert-mat). Reads the folders
    above path, up to the filesystem's root."""
    from recon.pipelines.common.runfolder import RUN_FOLDERS, RUN_OUTPUTS

    given = Path(os.path.abspath(Path(path).expanduser()))
    for place in dict.fromkeys((given, given.resolve())):
        for folder in place.parents:
            made = sorted({_recorded_command(p) for p in _run_records(folder)} - {""})
            own = place.relative_to(folder).parts[0] in (*RUN_OUTPUTS, *RUN_FOLDERS)
            deletes = [m for m in made if not (m in MERGING or m.startswith("train ") and not own)]
            if deletes:
                raise BadInput(
                    f"{given}: is part of the output of `recon {deletes[0]}` in {folder}; its "
                    "--overwrite would delete it: choose another path"
                )


def check_same_command(folder: Path, command: str) -> None:
    """BadInput when the folder holds a run record (RUN_RECORDS) of another command than
    `command`: writing into it (shards, --skip-done, convert-mat) would mix two commands'
    outputs and replace the other's run.json (a training run's, a data set's)."""
    made = sorted({_recorded_command(p) for p in _run_records(folder)} - {command})
    if made:
        named = ", ".join(f"`recon {m}`" if m else "an unreadable run record" for m in made)
        raise BadInput(
            f"{folder}: holds the output of {named}; only an earlier output of `recon "
            f"{command}` is replaced or written into: choose another path"
        )


def listing(entries: list[Path]) -> str:
    """'a.png, sub/, b.png and 4 more': the first three of a folder's entries, for a message."""
    shown = ", ".join(p.name + ("/" if p.is_dir() else "") for p in entries[:3])
    return shown + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")


def unowned(entries: list[Path]) -> str:
    """What a folder that no run record marks as an output folder holds, for a message: "files
    no recon command wrote (a.png, b.png)", or, when single-file outputs' records
    (NAME.run.json, check_run_record) are among them, "files (a.json, a.json.run.json; among
    them single-file outputs of `recon embed-spine`) but is no command's output folder"."""
    written = {_recorded_command(p) for p in entries if p.name.endswith(".run.json")} - {""}
    if not written:
        return f"files no recon command wrote ({listing(entries)})"
    commands = " and ".join(f"`recon {c}`" for c in sorted(written))
    return (
        f"files ({listing(entries)}; among them single-file outputs of {commands}) but is no "
        "command's output folder"
    )


def _run_records(folder: Path) -> list[Path]:
    """The run records (RUN_RECORDS) a folder holds."""
    return sorted(p for pattern in RUN_RECORDS for p in Path(folder).glob(pattern))


def run_records(folder: Path, command: str) -> list[tuple[Path, dict]]:
    """(path, content) of each readable run record (RUN_RECORDS) in folder that `command`
    wrote: what earlier runs into a shared folder were made with."""
    records = []
    for path in _run_records(folder) if Path(folder).is_dir() else []:
        try:
            doc = json.loads(path.read_text(encoding="utf-8-sig"))
        except (OSError, UnicodeDecodeError, ValueError):
            continue
        if isinstance(doc, dict) and doc.get("command") == command:
            records.append((path, doc))
    return records


def _recorded_command(record: Path) -> str:
    """The command a run record names ('' when it cannot be read, or is no recon run record:
    one of another tool, such as Sacred's run.json, names a command but no recon version)."""
    try:
        doc = json.loads(record.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, ValueError):
        return ""
    if not isinstance(doc, dict) or "version" not in doc or "config" not in doc:
        return ""
    command = doc.get("command")
    return command if isinstance(command, str) else ""


def check_run_record(output: Path, overwrite: bool, inputs: Iterable[Path | None] = ()) -> Path:
    """The run record beside a single output file, checked as an output (check_output): OUT's
    full name + `.run.json` (`d.png` -> `d.png.run.json`, so `d.png` and `d.dcm` keep one each).
    A record left without its output (the output deleted) is replaced without --overwrite."""
    output = Path(output).expanduser().absolute()
    record = output.with_name(output.name + ".run.json")
    return check_output(record, overwrite or not output.exists(), inputs=inputs)


def _covers(output: Path, source: Path) -> bool:
    """True when output is source or a folder above it, each taken both as given (a link where
    the user put it) and resolved (where it points), or the same file."""
    from recon.pipelines.common.inputs import both_places

    places = both_places(source)
    if any(out == src or out in src.parents for out in both_places(output) for src in places):
        return True
    with contextlib.suppress(OSError):
        return output.exists() and source.exists() and os.path.samefile(output, source)
    return False


def _umask() -> int:
    """The process umask, read without changing it where Linux reports it."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, so bookkeeping is never cut in half."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def temporary_file(target: Path) -> Path:
    """A new empty file beside target (hidden, same suffix), mode 0666 less the umask."""
    target = Path(target)
    remove_stale_temporaries(target, folder=False)
    path = _temporary(target, folder=False)
    path.chmod(0o666 & ~_umask())
    return path


def temporary_dir(target: Path) -> Path:
    """A new empty folder beside target (hidden), mode 0777 less the umask."""
    target = Path(target)
    remove_stale_temporaries(target, folder=True)
    path = _temporary(target, folder=True)
    path.chmod(0o777 & ~_umask())
    return path


def _affixes(target: Path, folder: bool) -> tuple[str, str]:
    """What the names of target's temporaries start and end with, around HOST.PID.RANDOM."""
    return (f".{target.name}.", "") if folder else (f".{target.stem}.", target.suffix)


def _temporary(target: Path, folder: bool) -> Path:
    """A new hidden file or folder beside target, named for this host and process, in _LIVE."""
    start, end = _affixes(target, folder)
    prefix = f"{start}{HOST}.{os.getpid()}."
    with _signals_deferred(), _LIVE_LOCK:
        if folder:
            path = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
        else:
            fd, name = tempfile.mkstemp(prefix=prefix, suffix=end, dir=target.parent)
            os.close(fd)
            path = Path(name)
        _LIVE.add(path)
    return path


def temporary_owner(name: str, target: Path, folder: bool) -> tuple[str, int] | None:
    """(host, pid) of the process that made `name` as a temporary of target (a folder's or a
    file's); None when the name is no temporary of target."""
    start, end = _affixes(Path(target), folder)
    middle = r"([A-Za-z0-9-]+)\.(\d+)\.[a-z0-9_]+"  # HOST.PID.RANDOM (mkstemp's letters)
    match = re.fullmatch(re.escape(start) + middle + re.escape(end), name)
    return (match[1], int(match[2])) if match else None


def remove_stale_temporaries(target: Path, folder: bool) -> None:
    """Remove the temporaries of target that a killed process of this host left; name in a
    warning line those of other hosts (alive or not, this host cannot tell) older than
    FOREIGN_WARNING_S. Each folder is listed once per process."""
    parent = Path(target).parent
    if parent not in _HIDDEN:
        try:
            with os.scandir(parent) as entries:
                _HIDDEN[parent] = [e.name for e in entries if e.name.startswith(".")]
        except OSError:
            return
    foreign, hosts = [], set()
    for name in list(_HIDDEN[parent]):
        path = parent / name
        owner = temporary_owner(name, target, folder)
        if owner is None:
            continue
        if owner[0] == HOST and not _pid_alive(owner[1], path):
            with contextlib.suppress(OSError):
                _remove(path)
            _HIDDEN[parent].remove(name)
        elif owner[0] != HOST and _age(path) > FOREIGN_WARNING_S:
            foreign.append(path)
            hosts.add(owner[0])
            _HIDDEN[parent].remove(name)
    if foreign:
        sys.stderr.write(
            f"warning: {parent}: {listing(sorted(foreign))}: left over a day ago by runs on "
            f"{', '.join(sorted(hosts))} writing {Path(target).name}; delete them if no such "
            "run is still going\n"
        )


def _pid_alive(pid: int, temporary: Path) -> bool:
    """Whether process pid of this host may still be writing temporary. For this process's own
    pid: while the temporary is in _LIVE (the others are an earlier process's of the same pid,
    as in a restarted container)."""
    if pid == os.getpid():
        with _LIVE_LOCK:
            return temporary in _LIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # PermissionError: another user's process
        return True
    return True


def _age(path: Path) -> float:
    """Seconds since path was last modified (0 when it cannot be read)."""
    try:
        return time.time() - path.lstat().st_mtime
    except OSError:
        return 0.0


def discard(path: Path) -> None:
    """Remove a temporary made here (no error when it is gone already)."""
    with _signals_deferred():
        _remove(Path(path))
        _LIVE.discard(Path(path))


def remove_temporaries() -> None:
    """Remove every temporary still alive (called on interrupts and unforeseen errors)."""
    with _signals_deferred():
        for path in list(_LIVE):
            _remove(path)
            _LIVE.discard(path)


def _commit(tmp: Path, target: Path) -> None:
    """Rename tmp onto target (a file, or a folder that replaces any folder there)."""
    with _signals_deferred():
        if tmp.is_dir() and target.is_dir() and not target.is_symlink():
            old = _temporary(target, folder=True)  # a killed run's is removed as stale
            os.replace(target, old / "x")
            os.replace(tmp, target)
            discard(old)
        else:
            if tmp.is_dir() and (target.exists() or target.is_symlink()):
                target.unlink()
            os.replace(tmp, target)
        _LIVE.discard(tmp)


_WRITE_ERRORS = (*FULL_DISK, errno.EFBIG)  # only a write raises these


@contextlib.contextmanager
def atomic_file(target: Path) -> Iterator[Path]:
    """Yield a temporary path with the target's suffix; on success it replaces the target."""
    target = Path(target)
    tmp = temporary_file(target)
    try:
        yield tmp
        _commit(tmp, target)
    except OSError as error:
        _name_file(error, tmp)
        raise
    finally:
        if tmp in _LIVE:
            discard(tmp)


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a fresh temporary folder beside target; on success it takes the target's place."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_dir(target)
    try:
        yield tmp
        _commit(tmp, target)
    except OSError as error:
        _name_file(error, tmp)
        raise
    finally:
        if tmp in _LIVE:
            discard(tmp)


def _name_file(error: OSError, tmp: Path) -> None:
    """Name the temporary being written in a full-disk OSError that names no file (a write
    through a file object: torch.save, PIL, numpy), so that its line can say where: the disk
    that is full is the temporary's (the CLI's full-disk line names its visible folder). Other
    errors may come from reading an input inside the block, so they are left as they are."""
    if error.filename is None and error.errno in _WRITE_ERRORS:
        error.filename = str(tmp)


@contextlib.contextmanager
def merged_dir(target: Path) -> Iterator[Path]:
    """Yield a temporary folder; on success its files are moved into target (created when
    missing), replacing same-named files and keeping the others. On failure nothing is moved."""
    target = Path(target)
    if not target.is_dir():
        with atomic_dir(target) as folder:
            yield folder
        return
    tmp = temporary_dir(target)
    try:
        yield tmp
        with _signals_deferred():
            for item in sorted(tmp.rglob("*")):
                if item.is_dir():
                    continue
                destination = target / item.relative_to(tmp)
                destination.parent.mkdir(parents=True, exist_ok=True)
                os.replace(item, destination)
    finally:
        discard(tmp)


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (indent 2, keys in insertion order)."""
    text = json.dumps(data, indent=2, default=jsonable) + "\n"
    with atomic_file(Path(path)) as tmp:
        tmp.write_text(text)


def jsonable(value: Any) -> Any:
    """json.dumps default: arrays and tensors as lists, paths as strings."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def run_record(command: str, seed: int | None, config: dict, timings: dict, metrics: dict) -> dict:
    """The content of run.json: what ran, with which settings, how long, with which result."""
    from recon import __version__

    return {
        "command": command,
        "argv": sys.argv,
        "version": __version__,
        "seed": seed,
        "config": config,
        "timings_s": {k: round(v, 4) for k, v in timings.items()},
        "metrics": metrics,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
