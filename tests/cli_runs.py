"""Running `recon` in-process inside fixtures that build what the tests need."""

from __future__ import annotations

import pytest


def run_ok(*args) -> None:
    """`recon ARGS...` in-process; the test fails unless it exits 0."""
    from recon.cli.app import main

    with pytest.raises(SystemExit) as done:
        main([str(a) for a in args])
    assert done.value.code in (0, None)
