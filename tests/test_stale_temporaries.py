"""Temporaries a killed command left (SIGKILL, the OOM killer, a node lost): named for their host
and process, removed by the next command that writes the same output once that process is gone,
kept while it lives, and named in a warning line when another host left them over a day ago."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_runs import SLOW_WRITE

from recon.pipelines.common.outputs import HOST, temporary_owner


@pytest.fixture
def sphere(tmp_path) -> Path:
    from recon.pipelines.common.io import save_mesh
    from recon.pipelines.shapes.meshes import make_shape

    save_mesh(make_shape("sphere"), tmp_path / "sphere.stl")
    return tmp_path / "sphere.stl"


def dead_pid() -> int:
    """The pid of a process that has ended."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_a_killed_run_leaves_its_temporary_and_the_rerun_removes_it(sphere, tmp_path, recon):
    work = tmp_path / "work"
    work.mkdir()
    args = [sys.executable, "-c", SLOW_WRITE, "project", sphere, "-o", work / "v"]
    args = [str(a) for a in [*args, "--size", "16", "-q"]]
    process = subprocess.Popen(args, stderr=subprocess.PIPE, env={**os.environ})
    deadline = time.monotonic() + 120
    while not (work / "started").exists():
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    (left,) = hidden(work)
    assert re.fullmatch(rf"\.v\.{HOST}\.{process.pid}\.[a-z0-9_]+", left)
    assert list((work / left).iterdir())  # what it had written
    rc, _, err = recon("project", sphere, "-o", work / "v", "--size", "16", "-q")
    assert rc == 0, err
    assert hidden(work) == [] and (work / "v" / "views.json").is_file()


def test_only_dead_processes_temporaries_of_this_host_are_removed(sphere, tmp_path, recon):
    """A live process's (another shard's) is kept; so are another host's, with a warning line
    when over a day old; one of this process's pid that it did not make (a container restarted
    with the same pid) is removed, and so is a dead process's file temporary of run.json."""
    work = tmp_path / "work"
    work.mkdir()
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        names = {
            "alive": f".v.{HOST}.{sleeper.pid}.abc_1234",
            "dead": f".v.{HOST}.{dead_pid()}.abc_1234",
            "mine": f".v.{HOST}.{os.getpid()}.abc_1234",
            "recent": ".v.elsewhere.1.abc_1234",
            "old": ".v.faraway.1.abc_1234",
            "other output": f".w.{HOST}.{dead_pid()}.abc_1234",
        }
        for name in names.values():
            (work / name).mkdir()
            (work / name / "part.png").write_bytes(b"x")
        day_ago = time.time() - 25 * 3600
        os.utime(work / names["old"], (day_ago, day_ago))
        rc, _, err = recon("project", sphere, "-o", work / "v", "--size", "16", "-q")
        assert rc == 0, err
        assert sleeper.poll() is None  # still alive when the temporaries were looked at
    finally:
        sleeper.kill()
        sleeper.wait()
    kept = ["alive", "recent", "old", "other output"]
    assert hidden(work) == sorted(names[k] for k in kept)
    assert err == (
        f"warning: {work}: {names['old']}/: left over a day ago by runs on faraway writing v; "
        "delete them if no such run is still going\n"
    )


def test_a_dead_processes_file_temporary_is_removed(tmp_path):
    from recon.pipelines.common.outputs import write_json

    stale = tmp_path / f".d.{HOST}.{dead_pid()}.abc_1234.json"
    other = tmp_path / f".d.{HOST}.{dead_pid()}.abc_1234.png"  # of d.png, not d.json
    stale.write_text("{")
    other.write_text("x")
    write_json(tmp_path / "d.json", {})
    assert hidden(tmp_path) == [other.name]


def test_temporary_names_say_which_target_host_and_process(tmp_path):
    from recon.pipelines.common.outputs import discard, temporary_dir, temporary_file

    assert re.fullmatch(r"[A-Za-z0-9-]{1,32}", HOST)
    folder, file = Path("v"), Path("d.png")
    assert temporary_owner(".v.node-7.123.abc_1234", folder, folder=True) == ("node-7", 123)
    assert temporary_owner(".d.node-7.123.abc_1234.png", file, folder=False) == ("node-7", 123)
    not_ours = [
        ".v.abc_1234",  # before host and pid were in the name
        ".v.old.abc_1234",  # the old folder of a replaced output, before too
        ".v.x.node-7.123.abc_1234",  # v.x's
        ".v.node-7.123.abc_1234.png",  # v.png's (a file)
        ".v.node.7.123.abc_1234",  # a host name with a dot
        ".v.node-7.12a.abc_1234",  # no pid
        "v.node-7.123.abc_1234",  # not hidden
        ".vv.node-7.123.abc_1234",
    ]
    for name in not_ours:
        assert temporary_owner(name, folder, folder=True) is None, name
    assert temporary_owner(".d.node-7.123.abc_1234", file, folder=False) is None
    assert temporary_owner(".d.node-7.123.abc_1234.jpg", file, folder=False) is None
    for make, target, is_folder in [(temporary_dir, folder, True), (temporary_file, file, False)]:
        made = make(tmp_path / target)
        assert temporary_owner(made.name, target, is_folder) == (HOST, os.getpid())
        discard(made)
