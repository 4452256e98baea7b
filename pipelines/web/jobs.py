"""Jobs on disk: one folder per job under DATA/jobs/<id>/ with job.json, the upload and the
results. Ids are unguessable (secrets.token_urlsafe); file names are generated, never taken from
a request. A restart reloads every job: finished ones stay (until remove_finished deletes them),
running ones are marked failed."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from recon.pipelines.common.outputs import write_json

JOB_ID = re.compile(r"[A-Za-z0-9_-]{22}")  # secrets.token_urlsafe(16); use fullmatch
STATES = ("queued", "running", "done", "failed")
FINISHED = ("done", "failed")
KEEP_HOURS = 168.0  # finished jobs are deleted a week after they end (0 keeps them)
# DATA/retention.json: when this folder's jobs were first kept for a limited time; a job that
# ended before then (a server without --keep-hours wrote it) counts its age from then
RETENTION_RECORD = "retention.json"
STOPPED_WHILE_RUNNING = "the server stopped while this job was running; upload the image again"


@dataclass
class Job:
    id: str
    task: str
    status: str
    input_name: str  # generated: input.<format suffix>
    source_name: str  # the upload's own name, for display only (never used as a path)
    created: float
    started: float | None = None
    finished: float | None = None
    progress: float = 0.0
    stage: str = "queued"
    error: str | None = None
    files: dict[str, str] = field(default_factory=dict)  # role -> generated file name
    summary: dict = field(default_factory=dict)


def display_name(name: str | None) -> str:
    """The last component of an uploaded file name, printable, at most 80 characters."""
    base = re.split(r"[\\/]", name or "")[-1]
    return "".join(c for c in base if c.isprintable())[:80] or "upload"


class JobStore:
    """Jobs in memory, mirrored to DATA/jobs/<id>/job.json at every change of state."""

    def __init__(self, data: Path) -> None:
        self.data = Path(data).absolute()
        self.jobs_dir = self.data / "jobs"
        self.uploads_dir = self.data / "uploads"  # uploads being received
        self._jobs: dict[str, Job] = {}
        self._sending: dict[str, int] = {}  # job id -> its files being sent (kept till then)
        self._lock = threading.Lock()
        self.retention_since = 0.0  # see RETENTION_RECORD; read by open

    def open(self) -> list[str]:
        """Create the folders, load every job; running -> failed. Returns the queued ids, oldest
        first, for the caller to submit again."""
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.uploads_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.uploads_dir.glob("*.part"):  # what new_upload_path made, only
            if JOB_ID.fullmatch(stale.stem):
                stale.unlink(missing_ok=True)
        self._remove_unrecorded()
        self.retention_since = self._retention_since()
        for path in sorted(self.jobs_dir.glob("*/job.json")):
            try:
                job = Job(**json.loads(path.read_text(encoding="utf-8-sig")))
            except (OSError, ValueError, TypeError):
                continue  # not a job folder this server wrote
            if not JOB_ID.fullmatch(job.id) or path.parent.name != job.id:
                continue
            self._jobs[job.id] = job
            if job.status == "running":
                self.discard_outputs(job.id)
                self.update(
                    job.id,
                    status="failed",
                    stage="failed",
                    error=STOPPED_WHILE_RUNNING,
                    finished=time.time(),
                )
        queued = [j for j in self._jobs.values() if j.status == "queued"]
        return [j.id for j in sorted(queued, key=lambda j: j.created)]

    def _remove_unrecorded(self) -> None:
        """Delete the job folders without a job.json: a server stopped between create's mkdir
        and its first save left one, which no restart loads and nothing else removes. Only
        folders named as create names them; a job.json that does not load is left alone."""
        import shutil

        for folder in self.jobs_dir.iterdir():
            if (
                JOB_ID.fullmatch(folder.name)
                and folder.is_dir()
                and not folder.is_symlink()
                and not (folder / "job.json").exists()
            ):
                shutil.rmtree(folder, ignore_errors=True)

    def _retention_since(self) -> float:
        """When this folder's jobs were first kept for a limited time (RETENTION_RECORD), the
        record written now when it is missing or unreadable: jobs that ended before a server
        with --keep-hours first opened the folder get the whole keep time from then, not none."""
        from recon.pipelines.common.io import read_json

        path = self.data / RETENTION_RECORD
        try:
            since = float(read_json(path)["since"])
            if since <= time.time():
                return since
        except (OSError, ValueError, TypeError, KeyError):
            pass
        since = time.time()
        write_json(path, {"since": since})
        return since

    def remove_finished(self, older_than_s: float, now: float | None = None) -> list[str]:
        """Delete the jobs that ended (done or failed) more than older_than_s seconds ago, with
        their folders (the retention of `recon serve --keep-hours`); their ids. Queued and
        running jobs stay, whatever their age; a job that ended before retention_since is
        aged from then."""
        import shutil

        now = time.time() if now is None else now
        with self._lock:
            expired = [
                job.id
                for job in self._jobs.values()
                if job.status in FINISHED
                and now - max(job.finished or job.created, self.retention_since) > older_than_s
                and job.id not in self._sending  # the next look, once sent
            ]
            for job_id in expired:
                del self._jobs[job_id]
        for job_id in expired:  # no worker writes there: they are done
            shutil.rmtree(self.jobs_dir / job_id, ignore_errors=True)
        return expired

    def new_upload_path(self) -> Path:
        """A fresh generated path for an upload being received."""
        return self.uploads_dir / f"{secrets.token_urlsafe(16)}.part"

    def create(self, task: str, upload: Path, suffix: str, source_name: str) -> Job:
        """A queued job owning the received upload (moved into the job's folder)."""
        job_id = secrets.token_urlsafe(16)
        folder = self.jobs_dir / job_id
        folder.mkdir(parents=True)
        input_name = f"input.{suffix}"
        os.replace(upload, folder / input_name)
        job = Job(job_id, task, "queued", input_name, display_name(source_name), time.time())
        with self._lock:
            self._jobs[job_id] = job
            self._save(job)
        return job

    def remove(self, job_id: str) -> None:
        """Forget a job that was never queued and delete its folder."""
        import shutil

        with self._lock:
            self._jobs.pop(job_id, None)
        shutil.rmtree(self.jobs_dir / job_id, ignore_errors=True)

    def get(self, job_id: str) -> Job | None:
        if not JOB_ID.fullmatch(job_id):
            return None
        with self._lock:
            job = self._jobs.get(job_id)
            return None if job is None else Job(**asdict(job))

    def folder(self, job_id: str) -> Path:
        if not JOB_ID.fullmatch(job_id):
            raise KeyError(job_id)
        return self.jobs_dir / job_id

    def update(self, job_id: str, **changes) -> None:
        """Change a job; saved to disk unless only its progress moved."""
        with self._lock:
            job = self._jobs[job_id]
            for key, value in changes.items():
                setattr(job, key, value)
            if set(changes) - {"progress", "stage"}:
                self._save(job)

    def discard_outputs(self, job_id: str) -> None:
        """Remove what a job that did not finish wrote into its folder: the results it had
        written and the temporaries of writes left half done. Its job.json (status and error)
        and its upload stay. Call once nothing writes there any more (the worker is done or
        gone)."""
        import shutil

        # under the lock: not while job.json's own temporary is being written
        with self._lock:
            job = self._jobs.get(job_id)
            keep = {"job.json"} | ({job.input_name} if job is not None else set())
            try:
                paths = list(self.folder(job_id).iterdir())
            except OSError:  # the folder is gone
                return
            for path in paths:
                if path.name in keep:
                    continue
                with contextlib.suppress(OSError):
                    if path.is_dir() and not path.is_symlink():
                        shutil.rmtree(path)
                    else:
                        path.unlink(missing_ok=True)

    def hold_file(self, job_id: str, name: str) -> Path | None:
        """The path of a result file the job lists under that exact name, its job kept from
        remove_finished until release_file(job_id) (a download is not cut off, or answered
        500, by the job's expiry); None, holding nothing, when there is no such file."""
        if not JOB_ID.fullmatch(job_id):
            return None
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or name not in job.files.values():
                return None
            path = self.jobs_dir / job_id / name
            if not path.is_file():
                return None
            self._sending[job_id] = self._sending.get(job_id, 0) + 1
            return path

    def release_file(self, job_id: str) -> None:
        """One hold_file of the job is over (its file sent, or the client gone)."""
        with self._lock:
            left = self._sending.pop(job_id, 0) - 1
            if left > 0:
                self._sending[job_id] = left

    def counts(self) -> dict[str, int]:
        with self._lock:
            statuses = [j.status for j in self._jobs.values()]
        return {state: statuses.count(state) for state in STATES}

    def _save(self, job: Job) -> None:
        """Mirror a job to its job.json. A failed write (a full disk, the folder deleted) is a
        line on stderr, not an error: the job's state lives on in memory, the page and the API
        read it from there, and the next change saves it again."""
        try:
            write_json(self.jobs_dir / job.id / "job.json", asdict(job))
        except OSError as error:
            sys.stderr.write(f"warning: job {job.id}: cannot save job.json ({error})\n")


SERVE_MARKS = (".lock", "jobs", "uploads", RETENTION_RECORD)  # what a server writes in --store
LOST_FOUND = "lost+found"  # what mkfs puts at the root of a fresh ext2/3/4 volume


def check_data_folder(data: Path) -> None:
    """BadInput for a --store folder that cannot be created or written (a read-only volume, a
    folder of another user), or that holds files but none a server wrote (the working folder,
    a data set, a training run): the server would add its own beside them. A fresh volume's
    empty lost+found/ is not such a file. Leaves nothing behind."""
    from recon.pipelines.common.errors import BadInput
    from recon.pipelines.common.outputs import listing

    data = Path(data)
    _require_writable(data)
    if not data.is_dir() or any((data / mark).exists() for mark in SERVE_MARKS):
        return
    entries = sorted(p for p in data.iterdir() if not _empty_lost_found(p))
    if entries:
        raise BadInput(
            f"{data}: holds files recon serve did not write ({listing(entries)}); give --store "
            "an empty or new folder, or one an earlier server used"
        )


def _require_writable(data: Path) -> None:
    """BadInput naming the folder and the reason when it cannot be created or a file cannot be
    written in it; the folders made to find out, and the probe file, are removed again."""
    from recon.pipelines.common.errors import BadInput
    from recon.pipelines.common.runfolder import missing_parents, remove_empty_folders

    missing = [data, *missing_parents(data)] if not data.exists() else []  # deepest first
    try:
        try:
            data.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise BadInput(
                f"{data}: cannot create the --store folder ({error.strerror or error})"
            ) from error
        try:
            probe = data / f".write-probe.{secrets.token_hex(6)}"
            probe.open("x").close()
            probe.unlink()
        except OSError as error:
            raise BadInput(
                f"{data}: cannot write in the --store folder ({error.strerror or error})"
            ) from error
    finally:
        remove_empty_folders(missing)


def _empty_lost_found(path: Path) -> bool:
    """Whether path is a lost+found folder with nothing in it (or that only its owner, root,
    may list, as mkfs makes it)."""
    if path.name != LOST_FOUND or not path.is_dir() or path.is_symlink():
        return False
    try:
        return not any(path.iterdir())
    except PermissionError:
        return True


@contextlib.contextmanager
def data_lock(data: Path) -> Iterator[None]:
    """Hold DATA/.lock for a server's lifetime; BadInput when another server holds it (two
    servers on one folder would run each other's queued jobs and clear each other's uploads)."""
    import fcntl

    from recon.pipelines.common.errors import BadInput

    Path(data).mkdir(parents=True, exist_ok=True)
    with (Path(data) / ".lock").open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            raise BadInput(
                f"{data}: another recon serve uses this --store folder (give each server its own)"
            ) from error
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
