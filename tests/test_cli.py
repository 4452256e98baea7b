"""The command-line contract: version, help, lazy imports, error lines and exit codes."""

from __future__ import annotations

import subprocess
import sys

import typer.main

from recon.cli.app import app

HEAVY = ("torch", "open3d", "vtk", "diffdrr", "vedo", "lightning")


def test_version(recon):
    code, out, _ = recon("--version")
    assert code == 0 and out.startswith("recon ")


def test_help_imports_no_heavy_library():
    probe = (
        "import sys\n"
        "from recon.cli.app import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def _commands(group, prefix: str = ""):
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from _commands(command, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", command


def test_every_command_documents_an_example_and_the_shared_options():
    root = typer.main.get_command(app)
    commands = dict(_commands(root))
    assert {"project", "backproject", "synth meshes", "demo", "train"} <= set(commands)
    for name, command in commands.items():
        assert "Example:" in (command.help or ""), f"{name}: no example in --help"
        options = {opt for p in command.params for opt in getattr(p, "opts", [])}
        assert {"--json", "--quiet"} <= options, f"{name}: --json or --quiet missing"
        if "--out" in options:
            assert "--overwrite" in options, f"{name}: writes outputs but has no --overwrite"


def test_unknown_command_is_a_usage_error(recon):
    code, _, _ = recon("frobnicate")
    assert code == 2


def test_unknown_training_task_is_one_line(recon):
    code, out, err = recon("train", "nosuchtask", "-o", "unused")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "unknown training task 'nosuchtask'" in err
