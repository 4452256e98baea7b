"""`recon serve` through its HTTP API: a job from upload to files (checked against a direct
prediction), bad requests with their status codes, the queue limit, restarts, CORS, the CLI."""

from __future__ import annotations

import fcntl
import io
import json
import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from recon.pipelines.common.io import Z_UP_TO_Y_UP, write_png


def make_voxel_checkpoint(tmp_path_factory) -> tuple[Path, Path]:
    """(checkpoint, data set root) of a tiny `recon train voxel` run (1 epoch, 32 px), made once
    per test session and shared by the xdist workers."""
    from recon.cli.app import main

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    root = shared / "web_voxel"
    checkpoint = root / "run" / "checkpoints" / "best.ckpt"
    with (shared / "web_voxel.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not checkpoint.is_file():
            root.mkdir(exist_ok=True)
            train = ["train", "voxel", "--data", str(root / "pix3d"), "--epochs", "1"]
            train += ["--batch-size", "8", "--set", "size=32", "--set", "hidden=32"]
            for args in (
                [
                    "synth",
                    "pix3d",
                    "-o",
                    str(root / "pix3d"),
                    "--count",
                    "1",
                    "--views",
                    "2",
                    "--overwrite",
                ],
                [*train, "-o", str(root / "run"), "--device", "cpu", "--overwrite"],
            ):
                try:
                    main([*args, "-q"])
                except SystemExit as exit_:
                    assert exit_.code in (0, None), args
    return checkpoint, root / "pix3d"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_voxel_checkpoint(tmp_path_factory)


@pytest.fixture(scope="module")
def chair_png(model) -> bytes:
    return sorted((model[1] / "img" / "chair").glob("*.png"))[0].read_bytes()


@pytest.fixture(scope="module")
def server(model, tmp_path_factory):
    """A TestClient on an app with one worker process; its data folder."""
    from fastapi.testclient import TestClient

    from recon.pipelines.web.app import ServeSettings, create_app

    data = tmp_path_factory.mktemp("serve") / "data"
    app = create_app(ServeSettings({"voxel": model[0]}, data, workers=1, device="cpu"))
    with TestClient(app) as client:
        yield client, data


def png_bytes(array: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def unusable_picture() -> bytes:
    """A float TIFF whose values run to 2: Pillow decodes it, the tasks' picture reader refuses
    it (float pictures are intensities in [0, 1])."""
    from PIL import Image

    values = np.full((40, 40), 2.0, np.float32)
    values[:20] = 0.5
    buffer = io.BytesIO()
    Image.fromarray(values, mode="F").save(buffer, format="TIFF")
    return buffer.getvalue()


UNUSABLE_ERROR = "float image values span [0.5, 2]"


def post_image(client, content: bytes, task: str = "voxel", name: str = "chair.png"):
    return client.post(
        "/api/jobs", files={"image": (name, content, "image/png")}, data={"task": task}
    )


def wait_for(client, url: str, timeout: float = 180.0) -> tuple[dict, list[float]]:
    """Poll a job until it ends; (final view, progress values seen)."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(url).json()
        seen.append(job["progress"])
        if job["status"] in ("done", "failed"):
            return job, seen
        time.sleep(0.1)
    raise AssertionError(f"job did not end in {timeout} s: {job}")


def tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def test_job_files_equal_a_direct_prediction(server, model, chair_png, tmp_path):
    import trimesh

    from recon.pipelines.occupancy.predict import predict_images

    client, data = server
    outside = tree(data.parent)
    response = post_image(client, chair_png, name="../../../etc/evil.png")
    assert response.status_code == 202, response.text
    created = response.json()
    assert response.headers["location"] == created["status_url"] == f"/api/jobs/{created['id']}"
    assert len(created["id"]) == 22 and created["status"] == "queued"
    job, progress = wait_for(client, created["status_url"])
    assert job["status"] == "done", job["error"]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert job["source_name"] == "evil.png"
    files = {f["role"]: f for f in job["files"]}
    assert {"viewer", "mesh", "grid", "render"} <= set(files)

    # the served grid is the model's prediction for that image, bit for bit
    (tmp_path / "chair.png").write_bytes(chair_png)
    [direct] = predict_images(
        "voxel", model[0], [tmp_path / "chair.png"], ["d"], tmp_path, "stl", False, "cpu"
    )
    served = np.load(io.BytesIO(client.get(files["grid"]["url"]).content))
    assert np.array_equal(served, np.load(direct["grid"]))
    assert job["summary"]["occupied"] == direct["occupied"] > 0
    # counted on the grid as the file keeps it (float16): 1470 in the file against a count of
    # 1459 before, when values just under 0.5 rounded up to it on writing
    assert direct["occupied"] == int((np.load(direct["grid"]) >= 0.5).sum())

    # the viewer's GLB is the task's mesh: same faces, same vertices (turned y up, as glTF is)
    glb = client.get(files["viewer"]["url"])
    assert glb.headers["content-type"] == "model/gltf-binary"
    viewer = trimesh.load(io.BytesIO(glb.content), file_type="glb", force="mesh")
    mesh = trimesh.load(io.BytesIO(client.get(files["mesh"]["url"]).content), file_type="stl")
    mesh.apply_transform(Z_UP_TO_Y_UP)
    assert len(viewer.faces) == len(mesh.faces) == job["summary"]["faces"] > 0
    assert np.allclose(np.sort(viewer.vertices, axis=0), np.sort(mesh.vertices, axis=0))
    render = client.get(files["render"]["url"])
    assert render.headers["content-type"] == "image/png" and render.content[:4] == b"\x89PNG"

    # it wrote only under --store/jobs/<id>/, under generated names
    assert tree(data.parent) - outside <= {"data"} | {f"data/{p}" for p in tree(data)}
    assert not [p for p in data.parents[1].rglob("*") if p.name == "evil.png"]
    written = {p.name for p in (data / "jobs" / job["id"]).iterdir()}
    assert written == {"job.json", "input.png", *(f["name"] for f in job["files"])}
    assert not list((data / "uploads").iterdir())
    assert json.loads((data / "jobs" / job["id"] / "job.json").read_text())["status"] == "done"


def test_a_picture_the_tasks_cannot_read_is_refused_at_upload(server, chair_png):
    """Pillow decodes it, the tasks' reader refuses it: it was queued (202) and its job failed."""
    client, data = server
    before = client.get("/healthz").json()["jobs"]
    response = post_image(client, unusable_picture(), name="f.tif")
    assert response.status_code == 415, response.text
    assert response.json()["error"].startswith(f"the TIFF file cannot be used: {UNUSABLE_ERROR};")
    assert client.get("/healthz").json()["jobs"] == before
    assert not list((data / "uploads").iterdir())
    job, _ = wait_for(client, post_image(client, chair_png).json()["status_url"])
    assert job["status"] == "done"


def test_a_worker_that_dies_fails_its_job_and_is_replaced(server, chair_png):
    import multiprocessing

    client, _ = server
    url = post_image(client, chair_png).json()["status_url"]
    deadline = time.monotonic() + 120
    while client.get(url).json()["status"] == "queued" and time.monotonic() < deadline:
        time.sleep(0.02)
    [worker] = [p for p in multiprocessing.active_children() if p.name == "recon-serve-worker"]
    worker.kill()
    job, _ = wait_for(client, url)
    assert job["status"] == "failed" and "worker process ended" in job["error"]
    job, _ = wait_for(client, post_image(client, chair_png).json()["status_url"])
    assert job["status"] == "done"


def _multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "b0undary") -> bytes:
    body = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        body += content + b"\r\n"
    return body + f"--{boundary}--\r\n".encode()


def test_bad_requests_get_a_clear_json_error(server, chair_png):
    from PIL import Image

    client, data = server
    job = post_image(client, chair_png).json()  # a finished job whose files the paths below aim at
    wait_for(client, job["status_url"])
    job_id = job["id"]
    before = client.get("/healthz").json()["jobs"]
    multipart = {"content-type": "multipart/form-data; boundary=b0undary"}
    big = b"\x89PNG" + bytes(16 * 1024 * 1024)
    bomb = io.BytesIO()
    Image.new("L", (8000, 6000)).save(bomb, format="PNG")  # 48 M pixels in ~50 kB
    tiny = io.BytesIO()
    Image.new("RGB", (7, 7), "white").save(tiny, format="PNG")

    def streamed():  # no Content-Length: counted while it streams in
        yield _multipart([("task", None, b"voxel")])[: -len("--b0undary--\r\n")]
        yield b"--b0undary\r\nContent-Disposition: form-data; "
        yield b'name="image"; filename="x.png"\r\n\r\n'
        for _ in range(20):
            yield bytes(1024 * 1024)

    cases = [
        (413, "larger than 16 MB", dict(files={"image": ("big.png", big)}, data={"task": "voxel"})),
        (413, "larger than 16 MB", dict(content=streamed(), headers=multipart)),
        (
            413,
            "pixels",
            dict(files={"image": ("bomb.png", bomb.getvalue())}, data={"task": "voxel"}),
        ),
        (
            415,
            "not an image",
            dict(files={"image": ("a.png", b"plain text")}, data={"task": "voxel"}),
        ),
        (  # it said "not an image this server reads (PNG, JPEG, ...)" of a 0-byte file
            415,
            "the file is empty (0 bytes)",
            dict(files={"image": ("a.png", b"")}, data={"task": "voxel"}),
        ),
        (  # a PNG cut short: its header reads, its pixels do not ("not an image")
            415,
            "the PNG file is damaged or cut short",
            dict(files={"image": ("a.png", chair_png[:200])}, data={"task": "voxel"}),
        ),
        (  # queued (202) and failed in the job, where `recon predict` refuses it at once
            422,
            "the image is 7 x 7 pixels; at least 8 x 8 are needed",
            dict(files={"image": ("t.png", tiny.getvalue())}, data={"task": "voxel"}),
        ),
        (
            422,
            "unknown task 'parts'",
            dict(files={"image": ("a.png", chair_png)}, data={"task": "parts"}),
        ),
        # it said "unknown task ''"
        (
            422,
            "no 'task' field (this server runs: voxel)",
            dict(files={"image": ("a.png", chair_png)}),
        ),
        (  # a text value in the image field was read as the image: 415 "not an image"
            422,
            "no file in the 'image' field (it holds text: send the image as a file)",
            dict(
                content=_multipart([("image", None, b"notafile"), ("task", None, b"voxel")]),
                headers=multipart,
            ),
        ),
        (422, "no file", dict(data={"task": "voxel"}, files={"other": ("a.txt", b"x")})),
        (  # a picture under another field name: not "form field too long"
            422,
            "no file in the 'image' field (got 'file')",
            dict(data={"task": "voxel"}, files={"file": ("chair.png", chair_png)}),
        ),
        (415, "multipart/form-data", dict(json={"task": "voxel"})),
        (400, "malformed multipart", dict(content=b"garbage", headers=multipart)),
        (
            400,
            "malformed multipart",
            dict(content=_multipart([("task", None, b"voxel")])[:-20], headers=multipart),
        ),
        (
            400,
            "one file",
            dict(content=_multipart([("image", "a.png", chair_png)] * 2), headers=multipart),
        ),
        (400, "Content-Length", dict(content=b"x", headers={**multipart, "content-length": "x"})),
    ]
    for status, message, request in cases:
        response = client.post("/api/jobs", **request)
        assert response.status_code == status, (message, response.text)
        body = response.json()
        assert body["status"] == status and message in body["error"], body
        assert "\n" not in body["error"]
    for url, message in [
        ("/api/jobs/nosuchjob", "no such job"),
        ("/api/jobs/" + "A" * 22, "no such job"),
        ("/api/jobs/" + "A" * 22 + "/files/viewer.glb", "no such file"),
        ("/api/jobs/..%2F..%2Fetc/files/passwd", ""),
        ("/nowhere", "Not Found"),
        ("/api/jobs/", "Not Found"),  # was a 307 to a URL without --root-path, answered 405
    ]:
        response = client.get(url, follow_redirects=False)
        assert response.status_code == 404 and message in response.json()["error"], url
    for name in ("job.json", "..%2Fjob.json", "input.png/..", "%2Fetc%2Fpasswd"):
        assert client.get(f"/api/jobs/{job_id}/files/{name}").status_code == 404, name
    assert client.get("/healthz").json()["jobs"] == before  # no job was created
    assert not list((data / "uploads").iterdir())  # and no upload left behind


def test_queue_limit_restart_and_url_prefix(model, chair_png, tmp_path):
    from fastapi.testclient import TestClient

    from recon.pipelines.web.app import ServeSettings, create_app
    from recon.pipelines.web.jobs import STOPPED_WHILE_RUNNING

    data = tmp_path / "data"
    paused = create_app(ServeSettings({"voxel": model[0]}, data, workers=0, queue_limit=2))
    with TestClient(paused, root_path="/recon") as client:
        first, second = (post_image(client, chair_png).json() for _ in range(2))
        assert first["status_url"].startswith("/recon/api/jobs/")
        full = post_image(client, chair_png)
        assert full.status_code == 429 and full.headers["retry-after"] == "5"
        assert "try again" in full.json()["error"]
        assert client.get("/healthz").json()["jobs"]["queued"] == 2
    # the server stops while `first` runs: simulate by writing its state as a worker would
    record = data / "jobs" / first["id"] / "job.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "status": "running"}))
    assert len(list((data / "jobs").iterdir())) == 2  # the refused job left nothing

    restarted = create_app(ServeSettings({"voxel": model[0]}, data, workers=1, device="cpu"))
    with TestClient(restarted) as client:
        failed = client.get(first["status_url"].removeprefix("/recon")).json()
        assert failed["status"] == "failed" and failed["error"] == STOPPED_WHILE_RUNNING
        done, _ = wait_for(client, f"/api/jobs/{second['id']}")  # queued: run after restart
        assert done["status"] == "done"
    with TestClient(create_app(ServeSettings({"voxel": model[0]}, data, workers=0))) as client:
        kept = client.get(f"/api/jobs/{second['id']}").json()
        assert kept == done
        for file in kept["files"]:
            assert client.get(file["url"]).status_code == 200


def skull_checkpoint(path: Path) -> Path:
    """An untrained 16^3 `skull` net whose output is its prior: a ball (face) around a shell
    (skull), saved in the training engine's checkpoint format."""
    import torch

    from recon.pipelines.common.engine import config_dict
    from recon.pipelines.skull.task import SkullConfig, build_net

    config = config_dict(SkullConfig(resolution=16, size=32, channels=8, voxel_mm=10.0))
    net = build_net(config)
    radius = np.linalg.norm(np.indices((16, 16, 16)) - 7.5, axis=0)
    logits = {
        name: np.where(inside, 4.0, -4.0)
        for name, inside in (("skull", np.abs(radius - 4.5) < 1), ("face", radius < 6))
    }
    net.set_output_prior(*(torch.as_tensor(logits[h], dtype=torch.float32) for h in logits))
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {"task": "skull", "config": config}}, path)
    return path


def test_skull_task_serves_skull_and_face_in_one_glb(tmp_path):
    import trimesh
    from fastapi.testclient import TestClient

    from recon.pipelines.web.app import ServeSettings, create_app

    checkpoint = skull_checkpoint(tmp_path / "skull.ckpt")
    settings = ServeSettings({"skull": checkpoint}, tmp_path / "data", workers=1, device="cpu")
    with TestClient(create_app(settings)) as client:
        radiograph = png_bytes(np.tile(np.arange(0, 256, 4, dtype=np.uint8), (64, 1)))
        job, _ = wait_for(client, post_image(client, radiograph, task="skull").json()["status_url"])
        assert job["status"] == "done", job["error"]
        files = {f["role"]: f["url"] for f in job["files"]}
        assert {"viewer", "skull", "face", "grids", "render"} <= set(files)
        assert job["summary"]["units"] == "mm"
        scene = trimesh.load(io.BytesIO(client.get(files["viewer"]).content), file_type="glb")
        assert set(scene.geometry) == {"skull", "face"}
        for head in ("skull", "face"):
            ply = trimesh.load(io.BytesIO(client.get(files[head]).content), file_type="ply")
            ply.apply_transform(Z_UP_TO_Y_UP)
            assert len(scene.geometry[head].faces) == len(ply.faces) > 0
            assert np.allclose(scene.geometry[head].bounds, ply.bounds)
        assert job["summary"]["faces"] == sum(len(g.faces) for g in scene.geometry.values())
        # the face (a ball of radius 6 voxels) encloses the skull (a shell at 4.5 +- 1)
        face, skull = scene.geometry["face"].extents, scene.geometry["skull"].extents
        assert (face > skull).all() and face.max() == pytest.approx(120, rel=0.1)  # 12 vox * 10 mm


def test_cors_only_for_named_origins(model, tmp_path):
    from fastapi.testclient import TestClient

    from recon.pipelines.common.errors import BadInput
    from recon.pipelines.web.app import ServeSettings, create_app
    from recon.pipelines.web.urls import check_origins

    preflight = {"access-control-request-method": "POST"}
    allowed = ServeSettings(
        {"voxel": model[0]},
        tmp_path / "a",
        workers=0,
        cors_origins=check_origins(["https://lab.example.org/"]),
    )
    with TestClient(create_app(allowed)) as client:
        ok = client.options("/api/jobs", headers={"origin": "https://lab.example.org", **preflight})
        assert ok.headers["access-control-allow-origin"] == "https://lab.example.org"
        other = client.get("/api/tasks", headers={"origin": "https://evil.example.com"})
        assert "access-control-allow-origin" not in other.headers
        # a refused preflight was plain text ("Disallowed CORS origin"); errors are JSON
        refused = client.options(
            "/api/jobs", headers={"origin": "https://evil.example.com", **preflight}
        )
        assert refused.status_code == 400 and refused.json() == {
            "error": "cross-origin request refused: disallowed CORS origin (allowed origins: "
            "https://lab.example.org)",
            "status": 400,
        }
    with TestClient(create_app(ServeSettings({"voxel": model[0]}, tmp_path / "b", workers=0))) as c:
        response = c.get("/api/tasks", headers={"origin": "https://lab.example.org"})
        assert "access-control-allow-origin" not in response.headers
        assert response.headers["x-content-type-options"] == "nosniff"
        assert [t["name"] for t in response.json()] == ["voxel"]
        docs = c.get("/docs").text
        assert "vendor/swagger-ui/swagger-ui-bundle.js" in docs and "http" not in docs.split(
            "<body>"
        )[0].replace("http-equiv", "")
        paths = c.get("/openapi.json").json()["paths"]
        assert {"/api/jobs", "/api/jobs/{job_id}", "/api/jobs/{job_id}/files/{name}"} <= set(paths)
        assert c.get("/vendor/swagger-ui/swagger-ui-bundle.js").status_code == 200
        assert c.get("/vendor/three/build/three.module.js").status_code == 200
    for bad in (["*"], ["https://*.example.org"], ["example.org"], ["https://a.org/path"]):
        with pytest.raises(BadInput):
            check_origins(bad)


def test_serve_cli_refuses_bad_options(model, recon, tmp_path):
    ckpt = model[0]
    write_png(tmp_path / "x.png", np.zeros((8, 8, 3), np.uint8))
    cases = [
        (["-c", f"corset={ckpt}"], "unknown task 'corset'"),
        (["-c", str(ckpt)], "expected TASK=CHECKPOINT"),
        (["-c", f"voxel={tmp_path / 'missing.ckpt'}"], "no such checkpoint"),
        (["-c", f"voxel={tmp_path / 'x.png'}"], "x.png: not a PyTorch checkpoint"),
        (["-c", f"parts={ckpt}"], "'voxel', not 'parts'"),
        (["-c", f"voxel={ckpt}", "-c", f"voxel={ckpt}"], "given twice"),
        (["-c", f"voxel={ckpt}", "--cors-origin", "*"], "'*' is refused"),
        (["-c", f"voxel={ckpt}", "--workers", "0"], "--workers must be in [1, 64], not 0"),
        (["-c", f"voxel={ckpt}", "--port", "70000"], "--port"),
        (["-c", f"voxel={ckpt}", "--store", str(tmp_path / "x.png")], "must be a folder"),
        # a folder of other files (its uploads/ was emptied at startup, and jobs/ added)
        (["-c", f"voxel={ckpt}", "--store", str(tmp_path)], "holds files recon serve did not"),
    ]
    # an address of another machine: the host is wrong, not the port (it said "--port 8000")
    cases.append((["-c", f"voxel={ckpt}", "--host", "192.0.2.1"], "--host 192.0.2.1: cannot"))
    busy = socket.socket()  # a port another server holds: uvicorn's own lines, exit 3
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = str(busy.getsockname()[1])
    cases.append((["-c", f"voxel={ckpt}", "--port", port], f"--port {port}: cannot listen"))
    for args, message in cases:
        data = [] if "--store" in args else ["--store", str(tmp_path / "d")]
        code, _, err = recon("serve", *args, *data)
        assert code == 2 and message in err and err.count("\n") == 1, (args, err)
        assert not (tmp_path / "d").exists()
    busy.close()


def test_help_imports_no_server_library():
    import subprocess
    import sys

    probe = (
        "import sys\nfrom recon.cli.app import main\n"
        "try:\n    main(['serve', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('fastapi', 'uvicorn', 'torch', 'starlette') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_a_job_that_breaks_its_dispatcher_fails_alone(server, chair_png, monkeypatch):
    """An error while handling one job (its job.json unwritable, its folder deleted) ended the
    dispatcher thread: every later job stayed queued while /healthz said ok."""
    client, _ = server
    pool = client.app.state.pool
    run = pool._run
    calls = []

    def breaks_once(job_id, process, conn):
        calls.append(job_id)
        if len(calls) == 1:
            raise FileNotFoundError(2, "No such file or directory", "job.json")
        return run(job_id, process, conn)

    monkeypatch.setattr(pool, "_run", breaks_once)
    first = post_image(client, chair_png).json()
    failed, _ = wait_for(client, first["status_url"])
    assert failed["status"] == "failed" and "could not run this job" in failed["error"]
    second = post_image(client, chair_png).json()
    done, _ = wait_for(client, second["status_url"])
    assert done["status"] == "done"
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json()["workers_running"] == 1
    assert client.head("/healthz").status_code == 200


def test_a_job_state_that_cannot_be_saved_lives_on_in_memory(tmp_path, capsys):
    from recon.pipelines.web.jobs import JobStore

    store = JobStore(tmp_path / "data")
    store.open()
    upload = store.new_upload_path()
    upload.write_bytes(b"x")
    job = store.create("voxel", upload, "png", "a.png")
    folder = store.folder(job.id)
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    folder.write_text("not a folder")  # job.json cannot be written (as with a full disk)
    store.update(job.id, status="failed", error="x")
    assert store.get(job.id).status == "failed"
    assert "cannot save job.json" in capsys.readouterr().err


def test_two_servers_on_one_data_folder_are_refused(tmp_path):
    from recon.pipelines.common.errors import BadInput
    from recon.pipelines.web.jobs import data_lock

    refused = pytest.raises(BadInput, match="another recon serve uses this --store folder")
    with data_lock(tmp_path / "data"), refused, data_lock(tmp_path / "data"):
        pass
    with data_lock(tmp_path / "data"):  # released when the first server ends
        pass


def test_a_full_queue_refuses_before_decoding_and_phone_jpegs_are_images(model, tmp_path):
    """With the queue full an upload is refused before its pixels are decoded (a 135 kB PNG
    of 40 M pixels cost each refused request gigabytes); a multi-picture JPEG (MPO) is a
    JPEG, not a server error."""
    from fastapi.testclient import TestClient
    from PIL import Image

    from recon.pipelines.web.app import ServeSettings, create_app
    from recon.pipelines.web.uploads import check_image

    mpo = tmp_path / "phone.jpg"
    frames = [Image.new("RGB", (40, 30), shade) for shade in ("red", "blue")]
    frames[0].save(mpo, format="MPO", save_all=True, append_images=frames[1:])
    assert Image.open(mpo).format == "MPO"
    assert check_image(mpo) == ("jpg", 40, 30)
    app = create_app(
        ServeSettings({"voxel": model[0]}, tmp_path / "data", workers=0, queue_limit=1)
    )
    with TestClient(app) as client:
        assert post_image(client, mpo.read_bytes(), name="phone.jpg").status_code == 202
        refused = post_image(client, b"not even an image")
        assert refused.status_code == 429 and refused.headers["retry-after"] == "5"


def test_a_checkpoint_rewritten_while_serving_is_not_run(model, chair_png, tmp_path):
    """Startup checks every checkpoint, but each job reads its file again: one rewritten since
    (a run retrained into the same path, junk) served another model, or failed naming the
    server's path to the uploader."""
    import shutil

    from fastapi.testclient import TestClient

    from recon.pipelines.web.app import ServeSettings, create_app

    served = tmp_path / "served.ckpt"
    shutil.copy(model[0], served)
    app = create_app(ServeSettings({"voxel": served}, tmp_path / "data", workers=1, device="cpu"))
    with TestClient(app) as client:
        served.write_bytes(b"junk")
        job, _ = wait_for(client, post_image(client, chair_png).json()["status_url"])
    assert job["status"] == "failed" and "checkpoint changed on disk" in job["error"]
    assert str(tmp_path) not in job["error"]


def test_startup_removes_only_the_uploads_it_made(tmp_path):
    from recon.pipelines.web.jobs import JobStore

    uploads = tmp_path / "data" / "uploads"
    uploads.mkdir(parents=True)
    (uploads / "holiday.jpg").write_text("a photo")
    store = JobStore(tmp_path / "data")
    stale = store.new_upload_path()
    stale.write_bytes(b"half an upload")
    store.open()
    assert not stale.exists() and (uploads / "holiday.jpg").is_file()


def test_serve_json_keeps_request_lines_off_stdout(tmp_path):
    import signal
    import subprocess
    import sys
    import urllib.request

    with socket.socket() as probe:  # a free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ckpt = skull_checkpoint(tmp_path / "skull.ckpt")
    args = ["serve", "--json", "-c", f"skull={ckpt}", "--port", str(port)]
    command = [sys.executable, "-m", "recon.cli.app", *args, "--store", str(tmp_path / "d")]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        started = json.loads(server.stdout.readline())  # printed once the port is bound
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{started['url']}healthz", timeout=5) as response:
                    assert response.status == 200
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not answer"
                time.sleep(0.2)
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=60)
    assert server.returncode == 143
    assert out == ""  # the result object was the only line
    assert '"GET /healthz HTTP/1.1" 200' in err


def wait_until_running(client, url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while client.get(url).json()["status"] == "queued":
        assert time.monotonic() < deadline, "the job did not start"
        time.sleep(0.02)


def test_stopping_mid_job_starts_no_worker_and_leaves_no_temporaries(model, chair_png, tmp_path):
    """A server stopped while a job runs started a fresh worker process only to end it (seconds
    added to every shutdown), and the files the killed worker was writing stayed in the job's
    folder under their hidden temporary names."""
    from fastapi.testclient import TestClient

    from recon.pipelines.web.app import ServeSettings, create_app

    app = create_app(ServeSettings({"voxel": model[0]}, tmp_path / "data", workers=1, device="cpu"))
    pool = app.state.pool
    spawn, spawned = pool._spawn, []
    pool._spawn = lambda: spawned.append(1) or spawn()
    with TestClient(app) as client:
        running, waiting = (post_image(client, chair_png).json() for _ in range(2))
        wait_until_running(client, running["status_url"])
        folder = tmp_path / "data" / "jobs" / running["id"]
        (folder / ".result.a1b2c3.npy").write_bytes(b"half a grid")  # as atomic_file leaves it
        (folder / ".result.d4e5f6").mkdir()
    assert spawned == [1]
    jobs = {
        job: json.loads((tmp_path / "data" / "jobs" / job / "job.json").read_text())
        for job in (running["id"], waiting["id"])
    }
    assert jobs[running["id"]]["status"] == "failed"
    assert "server stopped" in jobs[running["id"]]["error"]
    assert jobs[waiting["id"]]["status"] == "queued"  # runs after a restart
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_a_restart_clears_the_temporaries_of_a_job_cut_short(model, tmp_path):
    """A server killed outright (SIGKILL, out of memory) mid-job: the restart fails the job and
    removes the half-written files it left."""
    from recon.pipelines.web.jobs import STOPPED_WHILE_RUNNING, JobStore

    store = JobStore(tmp_path / "data")
    store.open()
    upload = store.new_upload_path()
    upload.write_bytes(b"x")
    job = store.create("voxel", upload, "png", "a.png")
    store.update(job.id, status="running")
    folder = store.folder(job.id)
    (folder / ".result.a1b2c3.stl").write_bytes(b"solid half")
    (folder / ".job.x9y8z7.json").write_text("{")
    restarted = JobStore(tmp_path / "data")
    restarted.open()
    assert restarted.get(job.id).error == STOPPED_WHILE_RUNNING
    assert sorted(p.name for p in folder.iterdir()) == ["input.png", "job.json"]


def start_serve(checkpoint: Path, data: Path, **popen):
    """`recon serve` in a subprocess on a free port; (process, base URL) once /healthz answers."""
    import subprocess
    import sys

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "recon.cli.app", "serve", "-c", f"voxel={checkpoint}", "-q"]
    command += ["--port", str(port), "--store", str(data), "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env, **popen)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert server.poll() is None, "recon serve exited"
        try:
            if httpx.get(f"{base}/healthz").status_code == 200:
                return server, base
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "recon serve did not start"
        time.sleep(0.2)


def test_sigterm_to_the_process_group_keeps_queued_jobs(model, chair_png, tmp_path):
    """systemd (and a closing terminal) signal every process of the server: the worker died of
    SIGTERM first, its job failed as a crash ("the worker process ended"), and a fresh worker
    took the next queued job only to be stopped with it, so a job that never ran was failed."""
    import signal

    import httpx

    data = tmp_path / "data"
    server, base = start_serve(model[0], data, start_new_session=True)
    try:
        files = {"image": ("chair.png", chair_png, "image/png")}
        running, waiting = (
            httpx.post(f"{base}/api/jobs", files=files, data={"task": "voxel"}).json()
            for _ in range(2)
        )
        wait_until_running(httpx.Client(base_url=base), running["status_url"])
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        _, err = server.communicate(timeout=60)
    assert server.returncode == 143, err
    status = {
        job["id"]: json.loads((data / "jobs" / job["id"] / "job.json").read_text())
        for job in (running, waiting)
    }
    assert status[running["id"]]["error"] == "the server stopped while this job was running"
    assert status[waiting["id"]]["status"] == "queued"


def test_a_stop_while_the_worker_starts_prints_one_line(model, tmp_path):
    """Ctrl+C in the terminal as soon as the server answers reaches the worker process while it
    imports (it imports the command's module as its parent's main): it printed the command's
    "interrupted" line a second time."""
    import signal

    server, _ = start_serve(model[0], tmp_path / "data", start_new_session=True)
    os.killpg(server.pid, signal.SIGINT)
    _, err = server.communicate(timeout=60)
    assert server.returncode == 130
    assert err.splitlines() == ["interrupted"], err


def test_a_second_ctrl_c_still_ends_the_workers(model, tmp_path):
    """A second Ctrl+C makes uvicorn skip the app's shutdown; the worker processes, which
    ignore SIGINT and SIGTERM, must still end with the server rather than hold its exit."""
    import signal
    import subprocess

    server, _ = start_serve(model[0], tmp_path / "data")
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
    server.send_signal(signal.SIGINT)
    time.sleep(0.05)  # two signals at once are delivered as one; after 0.1 s the shutdown runs
    server.send_signal(signal.SIGINT)
    try:
        server.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()
        raise
    assert server.returncode == 130
    time.sleep(0.5)
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]


def test_a_second_ctrl_c_while_shutting_down_exits_quietly(model, tmp_path):
    """Ctrl+C pressed again while the server waited for an upload to end (uvicorn's forced
    exit) printed a traceback of the app's cut-off lifespan; it is the one "interrupted"
    line, exit 130, with the workers and the half-received upload gone."""
    import signal
    import subprocess

    data = tmp_path / "data"
    server, base = start_serve(model[0], data)
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as upload:  # half sent: the shutdown waits
        upload.sendall(
            b"POST /api/jobs HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n"
            b"Content-Type: multipart/form-data; boundary=b0undary\r\n\r\n--b0undary\r\n"
        )
        time.sleep(0.5)
        server.send_signal(signal.SIGINT)
        time.sleep(0.5)
        assert server.poll() is None, "the first Ctrl+C did not wait for the upload"
        server.send_signal(signal.SIGINT)
        try:
            _, err = server.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            raise
    assert server.returncode == 130, err
    assert "Traceback" not in err and "Error" not in err, err
    assert err.strip().splitlines()[-1] == "interrupted", err
    time.sleep(0.5)
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]
    assert not list((data / "uploads").iterdir())


def test_a_job_that_fails_part_way_keeps_only_its_upload_and_record(model, chair_png, tmp_path):
    """A job whose last write failed (here viewer.glb, after the mesh, grid and render) left
    those results in its folder, listed nowhere; the folder keeps the upload and job.json,
    which reports the error."""
    from fastapi.testclient import TestClient

    from recon.pipelines.web.app import ServeSettings, create_app

    data = tmp_path / "data"
    with TestClient(create_app(ServeSettings({"voxel": model[0]}, data, workers=0))) as client:
        queued = post_image(client, chair_png).json()
    folder = data / "jobs" / queued["id"]
    (folder / "viewer.glb").mkdir()  # the viewer mesh cannot be written there
    app = create_app(ServeSettings({"voxel": model[0]}, data, workers=1, device="cpu"))
    with TestClient(app) as client:  # the restart runs the queued job
        job, progress = wait_for(client, queued["status_url"])
    assert job["status"] == "failed" and "Is a directory" in job["error"], job
    assert max(progress) >= 0.9  # it failed after the task's own outputs
    assert job["files"] == [] and str(data) not in job["error"]
    assert sorted(p.name for p in folder.iterdir()) == ["input.png", "job.json"]
    assert json.loads((folder / "job.json").read_text())["error"] == job["error"]


def test_a_job_whose_dispatcher_fails_mid_run_keeps_no_outputs(server, chair_png, monkeypatch):
    """The dispatcher failing while the worker writes a job's files (here at the viewer-mesh
    step) failed the job and left the files written so far, and those the worker went on to
    write, in its folder."""
    client, data = server
    store = client.app.state.store
    update = store.update

    def breaks_at_the_viewer(job_id, **changes):
        if changes.get("stage") == "viewer mesh":
            raise OSError(28, "No space left on device")
        update(job_id, **changes)

    monkeypatch.setattr(store, "update", breaks_at_the_viewer)
    job, _ = wait_for(client, post_image(client, chair_png).json()["status_url"])
    assert job["status"] == "failed" and "could not run this job" in job["error"], job
    folder = data / "jobs" / job["id"]
    assert sorted(p.name for p in folder.iterdir()) == ["input.png", "job.json"]
    monkeypatch.undo()
    job, _ = wait_for(client, post_image(client, chair_png).json()["status_url"])
    assert job["status"] == "done"


def test_the_file_chooser_offers_the_formats_the_server_reads():
    """accept="image/*" offered GIF, SVG and HEIC, which every upload then refused (415)."""
    import re

    from recon.pipelines.web.uploads import IMAGE_FORMATS

    page = (Path(__file__).parents[1] / "pipelines/web/static/index.html").read_text()
    [accept] = re.findall(r'<input id="file" type="file" accept="([^"]*)"', page)
    offered = {suffix.lstrip(".") for suffix in accept.split(",")}
    read = set(IMAGE_FORMATS.values()) | {"jpeg", "tiff"}  # the two spellings of those suffixes
    assert offered == read


def test_a_worker_signalled_while_it_starts_lives_on(tmp_path, monkeypatch):
    """A SIGTERM or Ctrl+C to the process group reached a worker still starting (a busy machine
    takes a moment), before it ignores them: it died, and its job failed as a crash ("the worker
    process ended"), or it printed a KeyboardInterrupt traceback. The signal now waits until the
    worker ignores it. A worker killed outright while it starts fails its job with one line, or
    leaves it queued when the server stops with it."""
    import signal
    import threading

    from recon.pipelines.web import worker
    from recon.pipelines.web.jobs import JobStore
    from recon.pipelines.web.worker import WorkerPool

    monkeypatch.setattr(worker, "STOP_WAIT_S", 1.0)
    store = JobStore(tmp_path / "data")
    store.open()
    pool = WorkerPool(store, {}, workers=1, queue_limit=1, device="cpu")

    def job():
        upload = store.new_upload_path()
        upload.write_bytes(b"x")
        return store.create("voxel", upload, "png", "a.png").id

    for number in (signal.SIGTERM, signal.SIGINT):
        process, conn = pool._spawn()
        os.kill(process.pid, number)  # at once: the new interpreter is still starting
        assert pool._wait_ready(job(), process, conn)
        conn.send(None)
        process.join(timeout=30)
        assert process.exitcode == 0
        conn.close()
    for stopped in (False, True):
        job_id = job()
        process, conn = pool._spawn()
        process.kill()
        if stopped:  # the server's own stop follows
            threading.Timer(0.3, pool._stop.set).start()
        assert not pool._wait_ready(job_id, process, conn)
        conn.close()
        record = store.get(job_id)
        if stopped:
            assert record.status == "queued"
        else:
            assert record.status == "failed"
            assert record.error == "the worker process could not start (exit code -9)"


def test_a_worker_whose_server_stopped_while_it_started_leaves_quietly():
    """A stop while the worker still imported its tasks: the server closed its end, and the
    worker's "ready" died in a BrokenPipeError traceback on the server's terminal."""
    import subprocess
    import sys

    script = (
        "from multiprocessing import Pipe\n"
        "from recon.pipelines.web.worker import worker_main\n"
        "server, worker = Pipe()\n"
        "server.close()\n"
        "worker_main(worker, [], 'cpu', 1)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == "", done.stderr
