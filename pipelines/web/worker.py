"""Inference outside the event loop: N long-lived worker processes, each fed by one thread that
takes job ids from a bounded queue and follows the job's progress messages.

A worker process that dies (out of memory, a crash in a native library) fails its job with one
line and is started again; the server keeps serving. One that dies while idle is started again
too, rather than left a zombie until the next job.
"""

from __future__ import annotations

import collections
import contextlib
import multiprocessing
import multiprocessing.resource_tracker
import multiprocessing.util
import os
import queue
import signal
import sys
import threading
import time
from pathlib import Path

from recon.pipelines.web.jobs import JobStore

POLL_S = 0.2
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}  # the server stops on these; its workers ignore them
NICENESS = 5  # workers yield some CPU to the server process, so status requests stay fast
RESPAWN_WAIT_S = 2.0  # before replacing a worker that ended while idle: no restart loop


class QueueFull(Exception):
    """More jobs are waiting than the queue holds, or than one client may have waiting; the
    message says which."""


def one_line(
    error: BaseException,
    folder: Path,
    checkpoint: Path | None = None,
    upload: tuple[Path, str] | None = None,
) -> str:
    """An error as one line for the page, with the server's paths (the job folder, the
    checkpoint) left out; upload: (the stored input, the name it was uploaded as), the input
    named as uploaded."""
    text = str(error).strip().splitlines()
    message = text[0] if text else type(error).__name__
    from recon.pipelines.common.errors import ReconError

    if not isinstance(error, ReconError):
        message = f"{type(error).__name__}: {message}"
    if checkpoint is not None:
        message = message.replace(str(checkpoint), "the task's checkpoint")
    if upload is not None:
        message = message.replace(str(upload[0]), upload[1])
    return message.replace(f"{folder}{os.sep}", "").replace(str(folder), "job folder")


STOP_WAIT_S = 5.0  # after a worker ended while starting: how long to wait for the server to stop


def file_stamp(path: Path) -> tuple[int, int]:
    """(size, modification time in ns) of a file: what changes when it is rewritten."""
    stat = Path(path).stat()
    return stat.st_size, stat.st_mtime_ns


def worker_main(conn, tasks: list[str], device: str, threads: int) -> None:
    """A worker process: import the tasks' code once, then run the jobs sent over conn."""
    # Ctrl+C, or a SIGTERM sent to the whole process group (systemd, a terminal closing), stops
    # the server, which stops us: dying first would fail the running job as a crash and let the
    # next queued one start on a fresh worker
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_IGN)  # drops one that came while we started (_spawn)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    os.nice(NICENESS)
    import torch

    torch.set_num_threads(threads)
    from recon.pipelines.web.runners import run_job
    from recon.pipelines.web.tasks import SERVE_TASKS, resolve

    for name in tasks:
        resolve(SERVE_TASKS[name].predict)
    try:
        conn.send(("ready",))  # from here on a stop signal to the process group leaves us running
    except OSError:  # the server stopped while we started and closed its end (BrokenPipeError)
        return

    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        folder = Path(request["folder"])
        image = folder / request["input"]
        name = request.get("source_name") or request["input"]

        def progress(fraction: float, stage: str) -> None:
            conn.send(("progress", fraction, stage))

        try:
            result = run_job(
                request["task"], Path(request["checkpoint"]), image, folder, device, progress
            )
            summary = result["summary"]
            if "warnings" in summary:  # the input named as uploaded, as in one_line
                summary["warnings"] = [w.replace(str(image), name) for w in summary["warnings"]]
            conn.send(("done", result))
        except Exception as error:  # every failure ends the job with one line, not the worker
            checkpoint = Path(request["checkpoint"])
            conn.send(("failed", one_line(error, folder, checkpoint, (image, name))))


def _kill_all(processes: list) -> None:
    for process in processes:
        if process.is_alive():
            process.kill()


QUEUE_FULL = "too many jobs are waiting; try again shortly"


class WorkerPool:
    """`workers` processes behind a queue of at most `queue_limit` waiting jobs, of which one
    client (an address) may have at most `client_limit` (0: no such limit). Both limit new jobs
    only: those restored at a restart are all queued, however many, and belong to no client."""

    def __init__(
        self,
        store: JobStore,
        checkpoints: dict[str, Path],
        workers: int,
        queue_limit: int,
        device: str = "auto",
        client_limit: int = 0,
    ) -> None:
        self.store = store
        self.checkpoints = checkpoints
        self.workers = workers
        self.device = device
        self.queue_limit = queue_limit
        self.client_limit = client_limit
        self._queue: queue.Queue[str] = queue.Queue()  # bounded by submit, not by the queue
        self._submitting = threading.Lock()  # also guards the two below
        self._client_of: dict[str, str] = {}  # waiting job -> the client that submitted it
        self._waiting_of: collections.Counter[str] = collections.Counter()  # client -> jobs
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        # the checkpoints as checked at startup: a job never runs a file rewritten since
        self._stamps = {task: file_stamp(path) for task, path in checkpoints.items()}
        # the worker processes, killed at exit should stop() not run (a second Ctrl+C makes
        # uvicorn skip the shutdown): multiprocessing's own exit would SIGTERM them, which they
        # ignore, and wait for them forever
        self._processes: list = []
        multiprocessing.util.Finalize(self, _kill_all, args=(self._processes,), exitpriority=10)

    def start(self) -> None:
        for _ in range(self.workers):
            thread = threading.Thread(target=self._serve, daemon=True)
            thread.start()
            self._threads.append(thread)

    def submit(self, job_id: str, client: str | None = None) -> None:
        """Queue a new job from `client` (an address; None: no one's); QueueFull when it would
        be refused (see refusal)."""
        with self._submitting:
            reason = self._refusal(client)
            if reason:
                raise QueueFull(reason)
            self._queue.put_nowait(job_id)
            if client is not None:
                self._client_of[job_id] = client
                self._waiting_of[client] += 1

    def restore(self, job_ids: list[str]) -> None:
        """Queue the jobs a restart found queued, all of them: each was accepted (202) before,
        and a dispatcher held one more outside the queue while its worker started, so there
        may be more than queue_limit (or than a smaller --queue-limit now allows). New jobs
        wait until fewer than queue_limit remain."""
        for job_id in job_ids:
            self._queue.put_nowait(job_id)

    def waiting(self) -> int:
        """Jobs in the queue, not yet taken by a worker."""
        return self._queue.qsize()

    def refusal(self, client: str | None = None) -> str:
        """Why a job submitted now by `client` would be refused (QueueFull), or ""."""
        with self._submitting:
            return self._refusal(client)

    def _refusal(self, client: str | None) -> str:
        if self._queue.qsize() >= self.queue_limit:
            return QUEUE_FULL
        mine = self._waiting_of[client] if client is not None else 0
        if self.client_limit and mine >= self.client_limit:
            return (
                f"you have {mine} jobs waiting, the most one client may have; send the next "
                "when one has started"
            )
        return ""

    def _taken(self, job_id: str) -> None:
        """A dispatcher took job_id from the queue: it no longer waits for its client."""
        with self._submitting:
            client = self._client_of.pop(job_id, None)
            if client is not None:
                self._waiting_of[client] -= 1
                if not self._waiting_of[client]:
                    del self._waiting_of[client]

    def dispatchers(self) -> int:
        """Dispatcher threads alive (each feeds one worker process)."""
        return sum(thread.is_alive() for thread in self._threads)

    def halt(self) -> None:
        """Stop taking jobs and end the running ones (failed), without waiting: a server that
        begins to shut down, before its connections have closed. Queued jobs stay queued."""
        self._stop.set()

    def stop(self) -> None:
        """Stop taking jobs, end the worker processes (a running job is failed)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def _spawn(self):
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        process = context.Process(
            target=worker_main,
            args=(child, list(self.checkpoints), self.device, threads),
            daemon=True,
            name="recon-serve-worker",
        )
        # the new interpreter inherits this thread's signal mask: a stop signal sent to the
        # process group while it starts stays pending until worker_main ignores it, where it
        # would end the worker (or print a KeyboardInterrupt traceback) before that. The
        # resource tracker the start needs is started first: starting it unblocks them.
        multiprocessing.resource_tracker.ensure_running()
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        child.close()
        self._processes[:] = [*(p for p in self._processes if p.is_alive()), process]
        return process, parent

    def _serve(self) -> None:
        """One dispatcher thread: owns a worker process, feeds it jobs from the queue."""
        process, conn = self._spawn()
        ready = False
        try:
            while not self._stop.is_set():
                try:
                    job_id = self._queue.get(timeout=POLL_S)
                    self._taken(job_id)
                except queue.Empty:
                    if not process.is_alive():  # reaped (is_alive waits for it), then replaced
                        conn.close()
                        sys.stderr.write(
                            "warning: a worker process ended while idle (exit code "
                            f"{process.exitcode}); starting another\n"
                        )
                        if self._stop.wait(RESPAWN_WAIT_S):
                            break
                        process, conn = self._spawn()
                        ready = False
                    continue
                if not process.is_alive():
                    conn.close()
                    process, conn = self._spawn()
                    ready = False
                if not ready:  # the job stays queued until its worker ignores stop signals
                    ready = self._wait_ready(job_id, process, conn)
                    if not ready:
                        conn.close()
                        if self._stop.is_set():  # the job stays queued for the next start
                            break
                        process, conn = self._spawn()
                        continue
                try:
                    healthy = self._run(job_id, process, conn)
                except Exception as error:  # noqa: BLE001 - one job's fault must not end the slot
                    sys.stderr.write(f"error: job {job_id}: {type(error).__name__}: {error}\n")
                    process.kill()  # it may be writing this job's files; it is replaced below
                    process.join(timeout=1)
                    with contextlib.suppress(KeyError):
                        self._fail(job_id, f"the server could not run this job ({error})")
                    healthy = False
                if not healthy:
                    conn.close()
                    process.join(timeout=1)
                    if process.is_alive():
                        process.kill()
                    if self._stop.is_set():  # stopping: no fresh worker to start and end again
                        break
                    process, conn = self._spawn()
                    ready = False
        finally:
            with contextlib.suppress(OSError):
                conn.send(None)
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
            conn.close()

    def _wait_ready(self, job_id: str, process, conn) -> bool:
        """Wait until a fresh worker has started (it then ignores Ctrl+C and SIGTERM); False
        when the server stops first or the worker ends while starting. A worker that ends on its
        own fails the job it was to run; one ended by a stop signal sent to the whole process
        group (a terminal, systemd) leaves it queued, as the server stops with it within
        STOP_WAIT_S (its exit code tells nothing: it depends on how far the start had got)."""
        while not self._stop.is_set():
            if conn.poll(POLL_S):
                try:
                    if conn.recv() == ("ready",):
                        return True
                except (EOFError, OSError):
                    pass
                break
            if not process.is_alive():
                break
        if self._stop.is_set():
            return False
        process.join(timeout=1)
        if process.is_alive():
            process.kill()
            process.join(timeout=1)
        job = self.store.get(job_id)
        if job is not None and job.status == "queued" and not self._stop.wait(STOP_WAIT_S):
            message = f"the worker process could not start (exit code {process.exitcode})"
            with contextlib.suppress(KeyError):  # the job removed meanwhile
                self._fail(job_id, message)
        return False

    def _run(self, job_id: str, process, conn) -> bool:
        """Run one job on the process; False when the process is gone or must be replaced."""
        job = self.store.get(job_id)
        if job is None or job.status != "queued":
            return True
        checkpoint = self.checkpoints.get(job.task)
        if checkpoint is None:
            self._fail(job_id, f"this server has no checkpoint for task {job.task!r}")
            return True
        try:
            same = file_stamp(checkpoint) == self._stamps[job.task]
        except OSError:
            same = False
        if not same:
            sys.stderr.write(f"error: {checkpoint}: changed or gone since the server started\n")
            self._fail(
                job_id,
                f"the {job.task} checkpoint changed on disk since the server started; the "
                "server must be restarted to serve it",
            )
            return True
        self.store.update(
            job_id, status="running", stage="starting", progress=0.05, started=time.time()
        )
        folder = self.store.folder(job_id)
        conn.send(
            {
                "task": job.task,
                "checkpoint": str(checkpoint),
                "folder": str(folder),
                "input": job.input_name,
                "source_name": job.source_name,
            }
        )
        while True:
            if self._stop.is_set():
                process.kill()
                self._fail_cut_short(
                    job_id, process, "the server stopped while this job was running"
                )
                return False
            if not conn.poll(POLL_S):
                if not process.is_alive():
                    self._fail_cut_short(
                        job_id, process, f"the worker process ended (exit code {process.exitcode})"
                    )
                    return False
                continue
            try:
                message = conn.recv()
            except (EOFError, OSError):
                self._fail_cut_short(
                    job_id, process, "the worker process ended while running this job"
                )
                return False
            if message[0] == "progress":
                self.store.update(job_id, progress=float(message[1]), stage=str(message[2]))
            elif message[0] == "done":
                self.store.update(
                    job_id,
                    status="done",
                    stage="done",
                    progress=1.0,
                    finished=time.time(),
                    **message[1],
                )
                return True
            else:
                self._fail(job_id, str(message[1]))
                return True

    def _fail_cut_short(self, job_id: str, process, message: str) -> None:
        """Fail a job whose worker was killed or died (a started worker ignores Ctrl+C and
        SIGTERM, so a stop signal to the process group does not end it: the server does)."""
        process.join(timeout=1)  # it wrote nothing more once it is gone
        self._fail(job_id, message)

    def _fail(self, job_id: str, message: str) -> None:
        """Fail a job, removing the outputs it had written (its worker is done with it): a
        failed job keeps its upload and job.json, with the error."""
        self.store.discard_outputs(job_id)
        self.store.update(
            job_id, status="failed", stage="failed", error=message, finished=time.time()
        )
