"""`recon serve` as a service that runs for months: a stop that a stalled client cannot hold,
a stalled upload given up, accepted jobs kept across a restart, finished jobs deleted after
--keep-hours, the --store folder checked before anything is read, HEAD and cache headers, the
upload check's memory, a worker that dies while idle, a download outliving its job's expiry."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import test_web_api
from test_web_api import post_image, start_serve, wait_for

# test_web_api's fixtures: its tiny voxel checkpoint (made once per session), a server on it
model, chair_png, server = test_web_api.model, test_web_api.chair_png, test_web_api.server

STALLED_POST = (
    b"POST /api/jobs HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n"
    b"Content-Type: multipart/form-data; boundary=b0undary\r\n\r\n"
)


def paused_app(data: Path, checkpoint: Path, **settings):
    """The app with no worker process (jobs stay queued): fast to start."""
    from recon.pipelines.web.app import ServeSettings, create_app

    return create_app(ServeSettings({"voxel": checkpoint}, data, workers=0, **settings))


@contextlib.contextmanager
def uvicorn_thread(app, http="h11"):
    """The app behind a real uvicorn server in a thread on a free port (http: uvicorn's
    protocol, by name or class); its port."""
    import uvicorn

    from recon.pipelines.web.urls import bind

    listening = bind("127.0.0.1", 0)
    config = uvicorn.Config(app, log_level="warning", access_log=False, http=http)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield listening.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def job_records(data: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in (data / "jobs").glob("*/job.json")}


def test_a_stalled_upload_does_not_hold_a_stop(model, chair_png, tmp_path):
    """A client that declared 100000 bytes and sent a few held SIGTERM for ever ("Waiting for
    connections to close") while the queued jobs went on running. Now the stop ends the
    running job at once, gives requests a few seconds, and exits 143 with the queued jobs
    kept for the next start and no worker left."""
    import httpx

    data = tmp_path / "data"
    server, base = start_serve(model[0], data)
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
    files = {"image": ("chair.png", chair_png, "image/png")}
    for _ in range(4):
        response = httpx.post(f"{base}/api/jobs", files=files, data={"task": "voxel"})
        assert response.status_code == 202, response.text
    with socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1]))) as stalled:
        stalled.sendall(STALLED_POST + b"--b")
        time.sleep(0.3)
        server.send_signal(signal.SIGTERM)
        try:  # requests get 5 s (SHUTDOWN_GRACE_S), the worker ends at once; before: for ever
            _, err = server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate()
            raise AssertionError("the stop waited for the stalled upload") from None
    assert server.returncode == 143, err
    statuses = [record["status"] for record in job_records(data).values()]
    assert len(statuses) == 4 and "running" not in statuses and "queued" in statuses, statuses
    time.sleep(0.5)
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]
    assert not list((data / "uploads").iterdir())


def test_an_upload_that_stops_arriving_is_given_up(model, tmp_path):
    """uvicorn has no body timeout: a client that stopped sending mid-file held its half-written
    upload (a .part file) and a file descriptor for as long as it kept the connection open."""
    data = tmp_path / "data"
    with (
        uvicorn_thread(paused_app(data, model[0], upload_idle_s=0.5)) as port,
        socket.create_connection(("127.0.0.1", port)) as stalled,
    ):
        stalled.sendall(
            STALLED_POST + b'--b0undary\r\nContent-Disposition: form-data; name="image"; '
            b'filename="a.png"\r\n\r\n\x89PNG'
        )
        time.sleep(0.2)
        assert len(list((data / "uploads").iterdir())) == 1  # being received
        stalled.settimeout(10)
        answer = b""
        while b"}" not in answer:  # the status line and headers, then the JSON body
            received = stalled.recv(65536)
            assert received, answer
            answer += received
        answer = answer.decode()
        closed = stalled.recv(1) == b""  # the server is done with the connection
    assert answer.startswith("HTTP/1.1 408"), answer
    assert "the upload stalled: nothing arrived for 0.5 s" in answer and closed
    assert not list((data / "uploads").iterdir())


def closed_by_server(connection: socket.socket) -> bool:
    """Whether the server closed the connection (within 10 s)."""
    connection.settimeout(10)
    try:
        return connection.recv(1) == b""
    except ConnectionResetError:
        return True


def test_request_headers_that_arrive_too_slowly_are_given_up(model, tmp_path):
    """uvicorn has no header timeout: a connection that sent nothing, or its request line a
    byte at a time, was held for as long as the client liked (a few hundred such exhaust the
    server's file descriptors). The limit counts from the connection, or from the first byte
    of a request: a kept-alive connection idle between requests is not cut by it."""
    import http.client

    from recon.pipelines.web.connections import header_timeout_protocol

    app = paused_app(tmp_path / "data", model[0])
    with uvicorn_thread(app, http=header_timeout_protocol(0.5)) as port:
        with (
            socket.create_connection(("127.0.0.1", port)) as silent,
            socket.create_connection(("127.0.0.1", port)) as trickle,
        ):
            started = time.monotonic()
            trickle.sendall(b"GET /healthz HTTP/1.1\r\nHost: l")
            with contextlib.suppress(OSError):  # a byte every 0.2 s does not renew the limit
                for _ in range(4):
                    time.sleep(0.2)
                    trickle.sendall(b"o")
            assert closed_by_server(silent) and closed_by_server(trickle)
            assert time.monotonic() - started < 5
        kept = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for pause in (0.0, 1.0):  # idle for twice the limit between two requests
            time.sleep(pause)
            kept.request("GET", "/healthz")
            response = kept.getresponse()
            assert response.status == 200 and json.loads(response.read())["status"] == "ok"
        kept.close()


def test_a_restart_queues_every_accepted_job(model, chair_png, tmp_path):
    """A restart submitted the queued jobs into a queue of --queue-limit and failed the rest
    ("the queue was full when the server restarted"): more can be queued on disk than the limit
    (a dispatcher holds one while its worker starts), and a smaller --queue-limit failed more.
    The limit is for new uploads."""
    from fastapi.testclient import TestClient

    data = tmp_path / "data"
    with TestClient(paused_app(data, model[0], queue_limit=3)) as client:
        accepted = [post_image(client, chair_png).json()["id"] for _ in range(3)]
    with TestClient(paused_app(data, model[0], queue_limit=1)) as client:
        jobs = [client.get(f"/api/jobs/{job_id}").json() for job_id in accepted]
        assert [job["status"] for job in jobs] == ["queued"] * 3, jobs
        assert client.get("/healthz").json()["waiting"] == 3
        refused = post_image(client, chair_png)  # new uploads wait until fewer are queued
        assert refused.status_code == 429, refused.text
    assert [r["status"] for r in job_records(data).values()] == ["queued"] * 3


def age(data: Path, job_id: str, hours: float, status: str | None = None) -> None:
    """Make a job look finished `hours` ago (as a server that ran it would have saved it)."""
    path = data / "jobs" / job_id / "job.json"
    record = json.loads(path.read_text())
    record["finished"] = time.time() - hours * 3600
    record["status"] = status or record["status"]
    path.write_text(json.dumps(record))


def test_finished_jobs_are_deleted_after_keep_hours(model, chair_png, tmp_path, monkeypatch):
    """Results were never removed, so the job store grew until the disk was full. Jobs done
    or failed more than --keep-hours ago go with their files, at start and while the server
    runs; queued jobs stay whatever their age, and 0 keeps everything. A job folder without a
    job.json (a server killed between making it and saving the job) is removed at start."""
    from fastapi.testclient import TestClient

    from recon.pipelines.web import app as app_module

    data = tmp_path / "data"
    with TestClient(paused_app(data, model[0])) as client:
        old_done, old_failed, recent, old_queued = (
            post_image(client, chair_png).json()["id"] for _ in range(4)
        )
    age(data, old_done, 3, "done")
    age(data, old_failed, 3, "failed")
    age(data, recent, 1, "done")
    age(data, old_queued, 3)
    orphan = data / "jobs" / ("A" * 22)  # made, then the server killed before job.json
    orphan.mkdir()
    (orphan / "input.png").write_bytes(chair_png)
    other = data / "jobs" / "notes"  # not a folder the server names
    other.mkdir()

    with TestClient(paused_app(data, model[0], keep_hours=0)) as client:  # 0: all kept
        assert client.get("/healthz").json()["jobs"]["done"] == 2
    assert not orphan.exists() and other.is_dir()

    retention = json.loads((data / "retention.json").read_text())
    assert time.time() - 120 < retention["since"] <= time.time()  # the first server wrote it
    (data / "retention.json").write_text(json.dumps({"since": time.time() - 4 * 3600}))
    monkeypatch.setattr(app_module, "REMOVE_EVERY_S", 0.1)
    with TestClient(paused_app(data, model[0], keep_hours=2)) as client:
        for job_id, status in [
            (old_done, 404),
            (old_failed, 404),
            (recent, 200),
            (old_queued, 200),
        ]:
            assert client.get(f"/api/jobs/{job_id}").status_code == status, job_id
        assert sorted(p.name for p in (data / "jobs").iterdir()) == sorted(
            [recent, old_queued, "notes"]
        )
        client.app.state.store.update(recent, finished=time.time() - 3 * 3600)  # it ages
        deadline = time.monotonic() + 10
        # the job leaves the index first (404), then its folder is deleted, outside the lock
        while (
            client.get(f"/api/jobs/{recent}").status_code != 404
            or (data / "jobs" / recent).exists()
        ):
            assert time.monotonic() < deadline, "the aged job was not removed while serving"
            time.sleep(0.1)
        assert client.get("/healthz").json()["jobs"] == {
            "queued": 1,
            "running": 0,
            "done": 0,
            "failed": 0,
        }


def test_jobs_of_a_server_without_keep_hours_get_the_keep_time_from_the_upgrade(
    model, chair_png, tmp_path
):
    """The --store of a server that kept every job (no retention.json): its first start with
    --keep-hours deleted every job that had ended more than a week before, at once. They now
    count their age from that start."""
    from fastapi.testclient import TestClient

    data = tmp_path / "data"
    with TestClient(paused_app(data, model[0], keep_hours=0)) as client:
        old, recent = (post_image(client, chair_png).json()["id"] for _ in range(2))
    (data / "retention.json").unlink()  # as the earlier version left the folder
    age(data, old, 30 * 24, "done")  # ended a month ago
    age(data, recent, 1, "done")
    started = time.time()
    with TestClient(paused_app(data, model[0], keep_hours=2)) as client:
        assert client.get(f"/api/jobs/{old}").status_code == 200
        assert client.get(f"/api/jobs/{recent}").status_code == 200
        store = client.app.state.store
        assert store.retention_since >= started
        assert store.remove_finished(2 * 3600, now=started + 1.9 * 3600) == []
        removed = store.remove_finished(2 * 3600, now=store.retention_since + 2.1 * 3600)
        assert sorted(removed) == sorted([old, recent])
    assert sorted(p.name for p in (data / "jobs").iterdir()) == []


def test_keep_hours_is_checked(model, recon, tmp_path):
    code, _, err = recon(
        "serve", "-c", f"voxel={model[0]}", "--keep-hours", "-1", "--store", tmp_path / "d"
    )
    assert code == 2 and "--keep-hours must be in [0, 1000000], not -1" in err, err
    assert not (tmp_path / "d").exists()


def test_an_unwritable_data_folder_is_one_line_before_any_checkpoint(model, recon, tmp_path):
    """A --store that could not be created or written failed after the checkpoints loaded, with
    exit 1 and an OSError line. It is one line naming the folder, exit 2, before any
    checkpoint is read (the checkpoint given is of another task, which reading would find)."""
    (tmp_path / "a-file").write_text("x")
    cases = [(tmp_path / "a-file" / "data", "cannot create the --store folder (Not a directory)")]
    if os.geteuid() != 0:  # root writes in a read-only folder
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        cases += [
            (locked, "cannot write in the --store folder (Permission denied)"),
            (locked / "data", "cannot create the --store folder (Permission denied)"),
        ]
    for data, message in cases:
        code, _, err = recon("serve", "-c", f"parts={model[0]}", "--store", data)
        assert code == 2 and err == f"error: {data}: {message}\n", err
    fresh = tmp_path / "new" / "data"
    from recon.pipelines.web.jobs import check_data_folder

    check_data_folder(fresh)  # it can be made: nothing is left behind
    assert not (tmp_path / "new").exists()


def test_a_fresh_volume_with_its_lost_found_is_accepted(tmp_path):
    """A fresh ext4 volume holds lost+found/: it was refused as "files recon serve did not
    write"; one with recovered files in it still is."""
    from recon.pipelines.common.errors import BadInput
    from recon.pipelines.web.jobs import check_data_folder

    (tmp_path / "lost+found").mkdir()
    check_data_folder(tmp_path)
    (tmp_path / "lost+found" / "#1234").write_text("recovered")
    with pytest.raises(BadInput, match=r"holds files recon serve did not write \(lost\+found/\)"):
        check_data_folder(tmp_path)


def test_a_job_id_with_a_trailing_newline_is_not_an_id(tmp_path):
    """JOB_ID ended in `$`, which also matches before a final newline."""
    from recon.pipelines.web.jobs import JobStore

    store = JobStore(tmp_path / "data")
    store.open()
    store.folder("A" * 22)
    for bad in ("A" * 22 + "\n", "A" * 21, "A" * 22 + "/"):
        with pytest.raises(KeyError):
            store.folder(bad)
    user_file = store.uploads_dir / ("A" * 22 + "\n.part")
    user_file.write_text("not ours")
    JobStore(tmp_path / "data").open()
    assert user_file.exists()


def test_head_is_answered_wherever_get_is_and_the_page_revalidates(model, chair_png, tmp_path):
    """HEAD got 405 on the page, a job's status and its files (only /healthz answered it); the
    page and its scripts had no Cache-Control, so after an upgrade a browser could run cached
    old scripts beside new ones."""
    from fastapi.testclient import TestClient

    data = tmp_path / "data"
    with TestClient(paused_app(data, model[0])) as client:
        job = post_image(client, chair_png).json()
    folder = data / "jobs" / job["id"]
    (folder / "render.png").write_bytes(chair_png)  # as if it had run
    record = json.loads((folder / "job.json").read_text())
    record.update(status="done", finished=time.time(), files={"render": "render.png"})
    (folder / "job.json").write_text(json.dumps(record))
    with TestClient(paused_app(data, model[0])) as client:
        urls = ["/", "/healthz", "/api/tasks", "/docs", "/openapi.json", job["status_url"]]
        urls += [f"{job['status_url']}/files/render.png", "/static/app.js", "/static/style.css"]
        urls += ["/vendor/three/build/three.module.js", "/api/jobs/" + "A" * 22]
        for url in urls:
            got, head = client.get(url), client.head(url)
            assert head.status_code == got.status_code and head.content == b"", url
            assert head.headers["content-length"] == got.headers["content-length"], url
        for url in (
            "/",
            "/static/app.js",
            "/static/viewer.js",
            "/vendor/three/build/three.module.js",
        ):
            response = client.get(url)
            assert response.headers["cache-control"] == "no-cache", url
        etag = client.get("/static/app.js").headers["etag"]
        assert client.get("/static/app.js", headers={"if-none-match": etag}).status_code == 304
        assert "cache-control" not in client.get(job["status_url"]).headers


def test_the_upload_check_decodes_without_gigabytes(tmp_path):
    """A 131 kB PNG of 6000 x 6600 pixels cost 1.6 GB at upload: decoded three times, the
    last turned into floats. Here 16 M pixels: about 650 MB before (41 bytes a pixel), under
    16 bytes a pixel now; measured in a fresh process, as the peak resident size."""
    from PIL import Image

    path = tmp_path / "big.png"
    Image.new("RGB", (4000, 4000), (200, 120, 40)).save(path)
    script = (  # VmHWM: the peak of this process's own memory (ru_maxrss counts the parent's)
        "import re, sys\n"
        "import numpy, PIL.Image\n"
        "from recon.pipelines.web.uploads import check_image\n"
        "def peak():\n"
        "    status = open('/proc/self/status').read()\n"
        "    return int(re.search(r'VmHWM:\\s+(\\d+) kB', status)[1]) * 1024\n"
        "before = peak()\n"
        "print(check_image(__import__('pathlib').Path(sys.argv[1])))\n"
        "print(peak() - before)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result, rise = done.stdout.splitlines()
    assert result == "('png', 4000, 4000)"
    assert int(rise) / 16e6 < 16, f"{int(rise) / 2**20:.0f} MB for 16 M pixels"


def test_the_upload_check_refuses_what_the_tasks_reader_refuses(tmp_path):
    """The check no longer runs read_rgb itself: it refuses the same pictures (a float outside
    [0, 1], NaN) and takes the same (a float inside it, 16-bit grey)."""
    from PIL import Image

    from recon.pipelines.common.errors import BadInput
    from recon.pipelines.common.io import read_rgb
    from recon.pipelines.web.uploads import UploadError, check_image

    pictures = {
        "inside.tif": np.linspace(0, 1, 40 * 40, dtype=np.float32).reshape(40, 40),
        "outside.tif": np.full((40, 40), 2.0, np.float32),
        "nan.tif": np.where(np.eye(40, dtype=bool), np.nan, 0.5).astype(np.float32),
        "grey16.png": np.arange(40 * 40, dtype=np.uint16).reshape(40, 40) * 40,
    }
    for name, values in pictures.items():
        path = tmp_path / name
        Image.fromarray(values).save(path)
        try:
            read_rgb(path)
            reads = True
        except BadInput:
            reads = False
        try:
            check_image(path)
            accepted = True
        except UploadError as refused:
            assert refused.status == 415 and "cannot be used" in refused.message, refused
            accepted = False
        assert accepted == reads == name.startswith(("inside", "grey")), name


def test_a_worker_that_dies_while_idle_is_replaced(server, chair_png, monkeypatch):
    """A worker that died with no job stayed a zombie, and /healthz said ok, until the next
    job came; the dispatcher now reaps it and starts another at once."""
    from recon.pipelines.web import worker

    monkeypatch.setattr(worker, "RESPAWN_WAIT_S", 0.1, raising=False)
    client, _ = server
    pool = client.app.state.pool
    job, _ = wait_for(client, post_image(client, chair_png).json()["status_url"])
    assert job["status"] == "done"  # its worker runs, idle now
    [idle] = [p for p in pool._processes if p.is_alive()]
    os.kill(idle.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{idle.pid}").exists():  # a zombie keeps its /proc entry until reaped
        assert time.monotonic() < deadline, "the dead worker was not reaped"
        time.sleep(0.05)
    while not [p for p in pool._processes if p.is_alive()]:
        assert time.monotonic() < deadline, "no worker was started in its place"
        time.sleep(0.05)
    job, _ = wait_for(client, post_image(client, chair_png).json()["status_url"])
    assert job["status"] == "done"


def test_a_download_is_not_cut_off_by_its_jobs_expiry(model, tmp_path, monkeypatch):
    """A job that expired between the file check and the response answered 500 (or its file
    vanished under the response). A file being sent now keeps its job until it is sent, or
    until the client goes, and the job is removed at the next look after that."""
    import http.client

    from recon.pipelines.web import app as app_module

    monkeypatch.setattr(app_module, "REMOVE_EVERY_S", 0.1)
    app = paused_app(tmp_path / "data", model[0], keep_hours=1)
    store = app.state.store
    payload = os.urandom(24 << 20)  # well beyond the socket buffers: the send waits for us
    with uvicorn_thread(app) as port:
        ids = []
        for _ in range(2):
            upload = store.new_upload_path()
            upload.write_bytes(b"\x89PNG")
            job = store.create("voxel", upload, "png", "chair.png")
            (store.folder(job.id) / "mesh.stl").write_bytes(payload)
            store.update(job.id, status="done", finished=time.time(), files={"mesh": "mesh.stl"})
            ids.append(job.id)
        read_all, walk_away = ids

        # the store's contract: a held file's job outlives its expiry until it is released
        assert store.hold_file(read_all, "other.stl") is None  # not listed: nothing held
        held = [store.hold_file(job_id, "mesh.stl") for job_id in ids]
        assert store.remove_finished(0.0, now=time.time() + 1e6) == []
        assert all(path.is_file() for path in held)
        for job_id in ids:
            store.release_file(job_id)

        connections = {}
        for job_id in ids:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            connection.request("GET", f"/api/jobs/{job_id}/files/mesh.stl")
            response = connection.getresponse()
            assert response.status == 200
            connections[job_id] = (connection, response, response.read(1 << 20))
        store.retention_since = time.time() - 4 * 3600  # the folder has kept jobs for hours
        for job_id in ids:  # both expire while their files are being sent
            store.update(job_id, finished=time.time() - 3 * 3600)
        time.sleep(1.0)  # ten looks for expired jobs
        assert all((store.folder(job_id) / "mesh.stl").is_file() for job_id in ids)

        connection, response, head = connections[read_all]
        assert head + response.read() == payload
        connection.close()
        connection, response, _ = connections[walk_away]
        connection.sock.shutdown(socket.SHUT_RDWR)  # the client goes mid-file
        connection.close()

        deadline = time.monotonic() + 20  # the job is forgotten, then its folder deleted
        while any(store.get(i) is not None or store.folder(i).exists() for i in ids):
            assert time.monotonic() < deadline, "a sent or abandoned download kept its job"
            time.sleep(0.1)


def test_one_client_cannot_fill_the_queue_for_everyone(model, chair_png, tmp_path):
    """--client-limit: with a queue of 4 and 2 a client, a client's third waiting job gets 429
    saying so, while another client's jobs are still taken until the queue itself is full. The
    client is the address uvicorn reports: behind a proxy it trusts (127.0.0.1 by default, as
    in `recon serve`), the one in X-Forwarded-For. Nothing is kept of a refused upload."""
    import httpx

    data = tmp_path / "data"
    app = paused_app(data, model[0], queue_limit=4, client_limit=2)
    files = {"image": ("chair.png", chair_png, "image/png")}

    def post(port: int, client: str) -> httpx.Response:
        headers = {"X-Forwarded-For": client}
        url = f"http://127.0.0.1:{port}/api/jobs"
        return httpx.post(url, files=files, data={"task": "voxel"}, headers=headers)

    with uvicorn_thread(app) as port:
        assert [post(port, "10.0.0.1").status_code for _ in range(2)] == [202, 202]
        third = post(port, "10.0.0.1")
        assert third.status_code == 429 and third.headers["retry-after"] == "5"
        assert third.json()["error"].startswith("you have 2 jobs waiting, the most one client")
        assert [post(port, "10.0.0.2").status_code for _ in range(2)] == [202, 202]
        full = post(port, "10.0.0.3")  # a new client, but the queue itself is full
        assert full.status_code == 429 and "too many jobs are waiting" in full.json()["error"]
        health = httpx.get(f"http://127.0.0.1:{port}/healthz").json()
    assert health["jobs"]["queued"] == 4 and health["client_limit"] == 2
    assert len(job_records(data)) == 4 and not list((data / "uploads").iterdir())


def test_a_client_s_share_frees_when_its_job_starts(model, chair_png, tmp_path):
    """A job counts against its client while it waits: once a worker has taken it, the same
    client may queue another (a client limit of 1 still lets one user run job after job)."""
    from fastapi.testclient import TestClient

    from recon.pipelines.web.app import ServeSettings, create_app

    settings = ServeSettings(
        {"voxel": model[0]}, tmp_path / "data", workers=1, device="cpu", client_limit=1
    )
    with TestClient(create_app(settings)) as client:
        for _ in range(2):
            response = post_image(client, chair_png)
            assert response.status_code == 202, response.json()
            job, _ = wait_for(client, response.json()["status_url"])
            assert job["status"] == "done", job["error"]
