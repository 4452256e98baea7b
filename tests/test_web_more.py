"""`recon serve`: a job's summary carries the warnings `recon predict` prints, its errors name
the upload as sent, a repeated form field is refused, and serve's range errors read as every
other command's."""

from __future__ import annotations

import numpy as np
import test_web_api
from test_web_api import (
    UNUSABLE_ERROR,
    _multipart,
    png_bytes,
    post_image,
    unusable_picture,
    wait_for,
)

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


def test_a_job_error_names_the_upload_as_sent(server):
    """It said "input.png: image is 6 x 40 pixels", the name the server stored it under."""
    client, _ = server
    job, _ = wait_for(
        client, post_image(client, unusable_picture(), name="f.tif").json()["status_url"]
    )
    assert job["status"] == "failed"
    assert job["error"].startswith(f"f.tif: {UNUSABLE_ERROR}"), job["error"]


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
    ]
    for args, message in cases:
        code, _, err = recon("serve", "-c", f"voxel={model[0]}", *args, "--data", tmp_path / "d")
        assert code == 2 and message in err and err.count("\n") == 1, (args, err)
        assert not (tmp_path / "d").exists()


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
