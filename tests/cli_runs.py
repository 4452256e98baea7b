"""Running `recon` in-process inside fixtures that build what the tests need."""

from __future__ import annotations

import os

import pytest


def require(condition: bool, why: str) -> None:
    """Skip on a machine without a tool `make test` installs (chromium, dicom3tools); fail in
    CI, where it is installed."""
    if not condition:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)


def run_ok(*args) -> None:
    """`recon ARGS...` in-process; the test fails unless it exits 0."""
    from recon.cli.app import main

    with pytest.raises(SystemExit) as done:
        main([str(a) for a in args])
    assert done.value.code in (0, None)


# `python -c SLOW_WRITE project ...`: recon whose `project` writes its views, marks the folder
# above its temporary with a file `started` and then sleeps a minute (to be stopped or killed)
SLOW_WRITE = """
import sys, time
from recon.pipelines.shapes import projection
original = projection.write_projection
def slow(projection_, folder, doc):
    original(projection_, folder, doc)
    (folder.parent / "started").write_text("x")
    time.sleep(60)
projection.write_projection = slow
from recon.cli.app import main
main(sys.argv[1:])
"""
