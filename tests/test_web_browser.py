"""The `recon serve` page in Debian's Chromium, driven by Playwright against a real server:
upload, progress, the Three.js viewer showing the mesh, the GLB it offers, rejected files."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from cli_runs import require
from test_web_api import make_voxel_checkpoint

pytestmark = pytest.mark.slow  # a server, a browser and a model: about a minute on 2 cores

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
BACKGROUND = np.array([0xF3, 0xF4, 0xF6])  # viewer.js BACKGROUND


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """`recon serve` on a free localhost port: (base URL, data folder, a chair image); it
    serves its own copy of the checkpoint, served_checkpoint(data)."""
    import httpx

    from recon.pipelines.web.app import THREE

    require(CHROMIUM.is_file(), f"{CHROMIUM} is missing (make test installs Debian's chromium)")
    require(THREE.is_dir(), f"{THREE} is missing (make setup runs npm ci)")
    shared, pix3d = make_voxel_checkpoint(tmp_path_factory)
    data = tmp_path_factory.mktemp("live") / "data"
    checkpoint = shutil.copy2(shared, served_checkpoint(data))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "recon.cli.app", "serve", "-c", f"voxel={checkpoint}"]
    command += ["--port", str(port), "--store", str(data), "--device", "cpu", "-q"]
    server = subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1"})
    base = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, "recon serve exited"
            try:
                if httpx.get(base + "healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "recon serve did not start"
            time.sleep(0.2)
        yield base, data, sorted((pix3d / "img" / "chair").glob("*.png"))[0]
    finally:
        server.terminate()
        server.wait(timeout=30)


def served_checkpoint(data: Path) -> Path:
    return data.parent / "voxel.ckpt"


@contextlib.contextmanager
def checkpoint_changed(data: Path):
    """The live server's checkpoint looks rewritten (its modification time moves on): its jobs
    fail, "checkpoint changed on disk"; put back afterwards."""
    path = served_checkpoint(data)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    try:
        yield
    finally:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


CHANGED = "the voxel checkpoint changed on disk since the server started"


@pytest.fixture(scope="module")
def browser(live):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, live):
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    page.requests = []
    page.on("request", lambda request: page.requests.append(request.url))
    page.goto(live[0])
    page.wait_for_selector("#task option", state="attached")
    yield page
    page.close()


def foreground(png: bytes) -> np.ndarray:
    """(H, W) bool: the pixels of a viewer screenshot that differ from its background (its
    rounded corners left out)."""
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)[12:-12, 12:-12]
    return np.abs(pixels - BACKGROUND).max(axis=2) > 12


def mesh_fraction(png: bytes) -> float:
    """Share of pixels that differ from the viewer's background."""
    return float(foreground(png).mean())


def test_upload_shows_the_mesh_and_offers_the_same_glb(page, live):
    import httpx
    import trimesh

    base, data, chair = live
    canvas = page.locator("#viewer canvas")
    page.evaluate("document.getElementById('viewer-note').hidden = true")
    assert mesh_fraction(canvas.screenshot()) < 0.001  # empty before
    page.set_input_files("#file", str(chair))
    page.wait_for_function("['done', 'error'].includes(document.body.dataset.state)", timeout=180e3)
    assert page.evaluate("document.body.dataset.state") == "done", page.text_content("#error")
    assert page.evaluate("document.getElementById('progress').value") == 1

    solid = mesh_fraction(canvas.screenshot())
    assert solid > 0.03, solid  # the mesh fills part of the view
    page.check("#wireframe")
    page.wait_for_timeout(300)
    wire = mesh_fraction(canvas.screenshot())
    assert 0.002 < wire < solid, (wire, solid)
    page.uncheck("#wireframe")
    page.click("#fit")

    faces = int(canvas.get_attribute("data-faces"))
    links = {
        link.get_attribute("data-role"): link.get_attribute("href")
        for link in page.locator("a.download").all()
    }
    assert {"viewer", "mesh", "grid", "render"} <= set(links)
    glb = httpx.get(base.rstrip("/") + links["viewer"])
    assert glb.status_code == 200
    served = trimesh.load(io.BytesIO(glb.content), file_type="glb", force="mesh")
    stl = httpx.get(base.rstrip("/") + links["mesh"]).content
    task_mesh = trimesh.load(io.BytesIO(stl), file_type="stl")
    assert len(served.faces) == faces == len(task_mesh.faces) > 0
    assert page.is_visible("#render") and page.is_visible("#input")
    # nothing came from anywhere but this server
    assert all(url.startswith(base) for url in page.requests), page.requests
    job_id = links["viewer"].split("/")[3]
    assert (data / "jobs" / job_id / "viewer.glb").read_bytes() == glb.content


def silhouette_box(png: bytes) -> tuple[int, int, float, float]:
    """(height, width) in pixels of what differs from the viewer's background, and the mean
    width of its lowest and of its highest fifth of rows."""
    mask = foreground(png)
    rows = np.flatnonzero(mask.any(axis=1))
    columns = np.flatnonzero(mask.any(axis=0))
    widths = mask[rows[0] : rows[-1] + 1].sum(axis=1)
    fifth = max(1, len(widths) // 5)
    return len(widths), columns[-1] - columns[0] + 1, widths[-fifth:].mean(), widths[:fifth].mean()


def show_in_page(page, live, mesh, tmp_path) -> bytes:
    """A z-up trimesh mesh served as a job's viewer.glb through write_viewer_glb; a screenshot
    of the page's first view of it."""
    from recon.pipelines.web.runners import write_viewer_glb

    _, _, chair = live
    mesh.export(tmp_path / "shown.stl")
    write_viewer_glb({"mesh": tmp_path / "shown.stl"}, tmp_path / "shown.glb")
    glb = (tmp_path / "shown.glb").read_bytes()
    page.route(
        "**/viewer.glb", lambda route: route.fulfill(body=glb, content_type="model/gltf-binary")
    )
    page.set_input_files("#file", str(chair))
    page.wait_for_function("['done', 'error'].includes(document.body.dataset.state)", timeout=180e3)
    assert page.evaluate("document.body.dataset.state") == "done", page.text_content("#error")
    assert page.locator("#viewer canvas").get_attribute("data-faces") == str(len(mesh.faces))
    return page.locator("#viewer canvas").screenshot()


def test_the_page_shows_a_z_up_mesh_standing(page, live, tmp_path):
    """A tall z-up mesh on a wide foot (a 1 x 1 x 0.2 slab under a 0.2 x 0.2 x 2 pole), served
    as the job's viewer.glb through write_viewer_glb, stands upright in the page's first view:
    taller than wide, the foot at the bottom (written y up, turned again by the page, it lay
    pointing away from the camera, wider than tall)."""
    import trimesh

    foot = trimesh.creation.box([1.0, 1.0, 0.2])
    pole = trimesh.creation.box([0.2, 0.2, 2.0])
    pole.apply_translation([0.0, 0.0, 1.1])
    shot = show_in_page(page, live, trimesh.util.concatenate([foot, pole]), tmp_path)
    height, width, bottom, top = silhouette_box(shot)
    assert height > 1.5 * width and bottom > 2 * top, (height, width, bottom, top)


def test_the_page_starts_in_front_of_the_object(page, live, tmp_path):
    """recon's objects face +y (a chair's back at -y): the first view looks from +y, where
    the object's +x is on the left. A block at +x beside a pole shows left of the pole's top
    (from behind, where the page started, it showed right of it)."""
    import trimesh

    pole = trimesh.creation.box([0.2, 0.2, 2.0])
    block = trimesh.creation.box([0.5, 0.5, 0.5])
    block.apply_translation([0.9, 0.0, -0.75])
    shot = show_in_page(page, live, trimesh.util.concatenate([pole, block]), tmp_path)
    low, high = row_centres(shot)
    assert low < high - 10, (low, high)


def row_centres(png: bytes) -> tuple[float, float]:
    """The mean column of what differs from the viewer's background in the lowest and in the
    highest fifth of its rows."""
    mask = foreground(png)
    rows = np.flatnonzero(mask.any(axis=1))
    fifth = max(1, len(rows) // 5)
    low, high = mask[rows[-fifth:]], mask[rows[:fifth]]
    return float(np.nonzero(low)[1].mean()), float(np.nonzero(high)[1].mean())


def drop_file(page, name: str, content_js: str) -> None:
    """Drag a file made in the page (content_js: a File's parts) and drop it on the drop zone."""
    transfer = page.evaluate_handle(
        f"""() => {{
            const transfer = new DataTransfer();
            transfer.items.add(new File({content_js}, {name!r}, {{type: "image/png"}}));
            return transfer;
        }}"""
    )
    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})


def test_a_text_file_named_png_gets_a_readable_error(page, live):
    import httpx

    jobs_before = httpx.get(live[0] + "healthz").json()["jobs"]
    drop_file(page, "notes.png", '["just some notes"]')
    page.wait_for_selector("#error:not([hidden])")
    message = page.text_content("#error")
    assert "notes.png" in message and "not an image" in message, message
    assert page.evaluate("document.body.dataset.state") == "error"
    assert httpx.get(live[0] + "healthz").json()["jobs"] == jobs_before


def test_a_file_over_16_mb_is_refused_before_upload(page):
    posts = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    drop_file(page, "huge.png", "[new Uint8Array(17 * 1024 * 1024)]")
    page.wait_for_selector("#error:not([hidden])")
    assert "huge.png: the file is larger than 16 MB" in page.text_content("#error")
    assert posts == []


def test_a_second_upload_replaces_the_first_and_a_reload_finds_it(page, live):
    """Two quick uploads: the page shows the second job's files alone (it listed both jobs'
    files, under the same labels); each result starts solid even after wireframe was ticked
    (the mesh stayed a wireframe under an unticked box); the job id in the address brings
    the result back after a reload (a failed poll lost it for good)."""
    _, _, chair = live
    canvas = page.locator("#viewer canvas")
    finished = "['done', 'error'].includes(document.body.dataset.state)"
    page.set_input_files("#file", str(chair))
    page.wait_for_function("location.hash.startsWith('#job=')", timeout=60e3)
    first = page.evaluate("location.hash")
    page.set_input_files("#file", str(chair))
    page.wait_for_function(f"location.hash !== '{first}'", timeout=60e3)
    second = page.evaluate("location.hash").removeprefix("#job=")
    page.wait_for_function(finished, timeout=180e3)
    page.wait_for_timeout(1500)  # the first job's poll, had it gone on, would have shown by now
    assert page.evaluate("document.body.dataset.state") == "done", page.text_content("#error")
    hrefs = [link.get_attribute("href") for link in page.locator("a.download").all()]
    assert hrefs and all(f"/api/jobs/{second}/" in href for href in hrefs), hrefs
    assert len(hrefs) == len(set(hrefs))
    solid = mesh_fraction(canvas.screenshot())

    page.check("#wireframe")
    page.wait_for_timeout(300)
    assert mesh_fraction(canvas.screenshot()) < solid
    page.set_input_files("#file", str(chair))
    page.wait_for_function(f"location.hash !== '#job={second}'", timeout=60e3)
    page.wait_for_function(finished, timeout=180e3)
    assert not page.is_checked("#wireframe")
    page.wait_for_timeout(300)
    assert mesh_fraction(canvas.screenshot()) == pytest.approx(solid, rel=0.05)

    third = page.evaluate("location.hash")
    page.reload()
    page.wait_for_function(finished, timeout=60e3)
    assert page.evaluate("location.hash") == third
    hrefs = [link.get_attribute("href") for link in page.locator("a.download").all()]
    assert hrefs and all(f"/api/jobs/{third.removeprefix('#job=')}/" in h for h in hrefs)


def test_polls_that_fail_are_retried(page, live):
    """Status polls that fail (the server restarting) are retried: the page used to stop at
    the first with "lost the job"."""
    _, _, chair = live
    failures = []

    def flaky(route):
        if route.request.method == "GET" and len(failures) < 3:
            failures.append(route.request.url)
            return route.abort()
        return route.continue_()

    page.route("**/api/jobs/*", flaky)
    page.set_input_files("#file", str(chair))
    page.wait_for_function("['done', 'error'].includes(document.body.dataset.state)", timeout=180e3)
    assert len(failures) == 3
    assert page.evaluate("document.body.dataset.state") == "done", page.text_content("#error")


def test_a_tiff_upload_is_shown_through_a_png_preview(page, live, tmp_path):
    """Browsers show no TIFF: the input figure stayed blank (width 0) for a TIFF upload."""
    from PIL import Image

    _, _, chair = live
    tiff = tmp_path / "chair.tif"
    Image.open(chair).save(tiff, format="TIFF")
    page.set_input_files("#file", str(tiff))
    page.wait_for_function("['done', 'error'].includes(document.body.dataset.state)", timeout=180e3)
    assert page.evaluate("document.body.dataset.state") == "done", page.text_content("#error")
    page.wait_for_function("document.getElementById('input').complete", timeout=10e3)
    assert page.evaluate("document.getElementById('input').naturalWidth") > 0
    assert page.get_attribute("#input", "src").endswith("/input_preview.png")
    roles = {link.get_attribute("data-role") for link in page.locator("a.download").all()}
    assert {"image", "preview"} <= roles  # the upload itself stays downloadable


def test_a_failed_job_shows_its_error_and_no_earlier_mesh(page, live):
    """After a job that failed, the viewer still showed the previous job's mesh (and offered
    Fit to view and Wireframe for it) beside "the job failed"."""
    _, _, chair = live
    canvas = page.locator("#viewer canvas")
    finished = "['done', 'error'].includes(document.body.dataset.state)"
    page.set_input_files("#file", str(chair))
    page.wait_for_function(finished, timeout=180e3)
    assert page.evaluate("document.body.dataset.state") == "done", page.text_content("#error")
    with checkpoint_changed(live[1]):
        page.set_input_files("#file", str(chair))
        page.wait_for_function(finished, timeout=180e3)
    message = page.text_content("#error")
    assert message.startswith(f"the job failed: {CHANGED}"), message
    assert "\n" not in message and str(live[1]) not in message
    assert canvas.get_attribute("data-faces") is None
    assert page.is_disabled("#fit") and page.is_disabled("#wireframe")
    assert page.is_visible("#viewer-note")
    page.evaluate("document.getElementById('viewer-note').hidden = true")
    assert mesh_fraction(canvas.screenshot()) < 0.001


def test_upload_by_keyboard_with_named_progress_and_status(page, live):
    """The drop zone was a focusable label with no role (a screen reader read it as text), the
    progress bar had no name and the stage was not announced."""
    drop = page.get_by_role("button", name="Drop an image here")
    with page.expect_file_chooser() as chooser:
        drop.focus()
        page.keyboard.press("Enter")
    with checkpoint_changed(live[1]):
        chooser.value.set_files(str(live[2]))
        page.wait_for_function("document.body.dataset.state === 'error'", timeout=180e3)
    assert page.get_by_role("progressbar", name="Job progress").is_visible()
    assert page.get_by_role("status").text_content() == "failed"
    assert CHANGED in page.get_by_role("alert").text_content()
