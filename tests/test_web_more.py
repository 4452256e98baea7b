"""`recon serve`: a job's summary carries the warnings `recon predict` prints, a job failing in
the worker is one line naming the upload as sent, a repeated form field is refused, and serve's
range errors read as every other command's."""

from __future__ import annotations

import numpy as np
import test_web_api
from test_web_api import _multipart, png_bytes, post_image, wait_for

# test_web_api's fixtures: its tiny voxel checkpoint (made once per session), a server on it
model, chair_png, server = test_web_api.model, test_web_api.chair_png, test_web_api.server


def test_the_summary_carries_the_predict_warnings_naming_the_upload(server):
    """It gave {"box_from": "whole picture", ...} only, where `recon predict voxel` warns."""
    client, data = server
    noise = np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    blank = np.full((48, 48, 3), 200, np.uint8)
    for name, picture, warning in [
        ("noise.png", noise, "noise.png: no plain background around the object"),
        ("blank.png", blank, "blank.png: the picture is blank (one colour): no object to crop"),
    ]:
        job, _ = wait_for(
            client, post_image(client, png_bytes(picture), name=name).json()["status_url"]
        )
        assert job["status"] == "done", job["error"]
        assert job["summary"]["box_from"] == "whole picture"
        [line] = job["summary"]["warnings"]
        assert line.startswith(warning) and str(data) not in line, line


def test_a_plain_picture_has_no_warnings(server, chair_png):
    client, _ = server
    job, _ = wait_for(client, post_image(client, chair_png).json()["status_url"])
    assert job["status"] == "done" and "warnings" not in job["summary"], job


def test_a_job_failing_in_the_worker_is_one_line_and_the_worker_runs_the_next(
    model, chair_png, tmp_path
):
    """A job that fails inside the worker (its input or its checkpoint gone by the time it
    runs) ends in one line that names the upload as sent ("input.png: ..." named the server's
    own name for it) and no server path; the same worker then runs the next job."""
    import multiprocessing

    from recon.pipelines.web.worker import worker_main

    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    worker = context.Process(target=worker_main, args=(child, ["voxel"], "cpu", 1), daemon=True)
    worker.start()
    child.close()
    folder = tmp_path / "job"
    folder.mkdir()
    (folder / "input.png").write_bytes(chair_png)
    request = {"task": "voxel", "checkpoint": str(model[0]), "folder": str(folder)}
    request |= {"input": "input.png", "source_name": "chair.png"}

    def run(**changes) -> tuple:
        parent.send({**request, **changes})
        while parent.poll(180):
            message = parent.recv()
            if message[0] != "progress":
                return message
        raise AssertionError("the worker did not answer in 180 s")

    try:
        assert parent.poll(180) and parent.recv() == ("ready",)
        no_input = run(input="gone.png", source_name="f.png")
        no_checkpoint = run(checkpoint=str(tmp_path / "gone.ckpt"))
        done = run()
    finally:
        parent.send(None)
        worker.join(30)
    assert no_input[0] == "failed" and no_input[1].startswith("f.png: "), no_input
    assert no_checkpoint[0] == "failed", no_checkpoint
    assert no_checkpoint[1].startswith("the task's checkpoint: "), no_checkpoint
    for _, line in (no_input, no_checkpoint):
        assert "\n" not in line and str(tmp_path) not in line, line
    assert done[0] == "done" and done[1]["summary"]["faces"] > 0, done


def test_a_repeated_task_field_is_refused(server, chair_png):
    """Two task fields ran the last one; two files were refused."""
    client, data = server
    before = client.get("/healthz").json()["jobs"]
    parts = [("image", "a.png", chair_png), ("task", None, b"voxel"), ("task", None, b"skull")]
    response = client.post(
        "/api/jobs",
        content=_multipart(parts),
        headers={"content-type": "multipart/form-data; boundary=b0undary"},
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "send one 'task' field, not several"
    assert client.get("/healthz").json()["jobs"] == before
    assert not list((data / "uploads").iterdir())


def test_serve_range_errors_read_as_every_command_s(model, recon, tmp_path):
    """They read "--port 70000: expected 1-65535", "--workers must be at most 64, not 65"."""
    cases = [
        (["--port", "70000"], "--port must be in [1, 65535], not 70000"),
        (["--port", "0"], "--port must be in [1, 65535], not 0"),
        (["--workers", "65"], "--workers must be in [1, 64], not 65"),
        (["--workers", "0"], "--workers must be in [1, 64], not 0"),
        (["--queue-limit", "0"], "--queue-limit must be in [1, 100000], not 0"),
        (["--client-limit", "-1"], "--client-limit must be in [0, 100000], not -1"),
    ]
    for args, message in cases:
        code, _, err = recon("serve", "-c", f"voxel={model[0]}", *args, "--store", tmp_path / "d")
        assert code == 2 and message in err and err.count("\n") == 1, (args, err)
        assert not (tmp_path / "d").exists()


def test_serve_data_is_the_old_name_of_store(model, recon, tmp_path):
    """--data is a data set in train and check-data; serve's job store was --data too."""
    (tmp_path / "x.png").write_bytes(b"not a folder")
    code, _, err = recon("serve", "-c", f"voxel={model[0]}", "--data", tmp_path / "x.png")
    assert code == 2
    assert err == (
        "warning: --data is deprecated and goes away in the next release; use --store\n"
        f"error: {tmp_path / 'x.png'}: --data must be a folder\n"
    )
    args = ("--data", tmp_path / "a", "--store", tmp_path / "b")
    code, _, err = recon("serve", "-c", f"voxel={model[0]}", *args)
    assert code == 2 and "--store" in err and "(its old name) disagree: give --store only" in err
    assert list(tmp_path.iterdir()) == [tmp_path / "x.png"]


def test_the_viewer_glb_is_y_up_as_gltf_specifies(server, chair_png):
    """viewer.glb held the task's z-up coordinates unturned (the page turned them), so other
    glTF viewers (Blender, model-viewer) showed the object lying on its back."""
    from recon.pipelines.common.io import Z_UP_TO_Y_UP, load_mesh

    client, data = server
    job, _ = wait_for(client, post_image(client, chair_png).json()["status_url"])
    assert job["status"] == "done", job["error"]
    folder = data / "jobs" / job["id"]
    files = {f["role"]: f["name"] for f in job["files"]}
    task_mesh = load_mesh(folder / files["mesh"])  # the STL, z up
    in_file = load_mesh(folder / files["viewer"], file_axes=True)  # the glTF's own axes
    y_up = task_mesh.vertices @ Z_UP_TO_Y_UP[:3, :3].T  # (x, y, z) -> (x, z, -y)
    assert len(in_file.faces) == len(task_mesh.faces) > 0
    assert np.allclose(np.unique(in_file.vertices, axis=0), np.unique(y_up, axis=0))
    # the object's height (z) is glTF's y, and load_mesh turns it back to the task's mesh
    assert np.allclose(in_file.bounds[:, 1], task_mesh.bounds[:, 2])
    back = load_mesh(folder / files["viewer"]).vertices
    assert np.allclose(np.unique(back, axis=0), np.unique(task_mesh.vertices, axis=0))
