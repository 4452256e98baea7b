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


def _description(recon, monkeypatch, command: str, columns: int) -> list[str]:
    """The help text above the option panels of `recon COMMAND --help`, one entry per line."""
    monkeypatch.setenv("COLUMNS", str(columns))
    code, out, _ = recon(*command.split(), "--help")
    assert code == 0, command
    lines = out.split("Usage:", 1)[1].split("╭", 1)[0].splitlines()[1:]
    return [line.strip() for line in lines if line.strip()]


def test_help_reads_as_prose_at_any_width(recon, monkeypatch):
    """Every paragraph of every command's help is one line on a wide terminal (a sentence broken
    by the source's line breaks ends a line without punctuation), and the Example line stays whole
    on a 100-column one."""
    commands = [name for name, _ in _commands(typer.main.get_command(app))]
    for command in commands:
        wide = _description(recon, monkeypatch, command, 400)
        broken = [line for line in wide if not line.endswith((".", ":", ")", "?", "!"))]
        broken = [line for line in broken if not line.startswith("Example:")]
        assert not broken, f"recon {command} --help breaks a sentence: {broken[0]!r}"
        example = [line for line in wide if line.startswith("Example:")]
        assert example and example[0] in _description(recon, monkeypatch, command, 100), command


def test_train_help_lists_only_tasks_that_run(recon):
    from recon.pipelines.common.tasks import TASKS, load_task

    code, out, _ = recon("train", "--help")
    listed = out.split("task", 2)[-1].split("[required]")[0]
    for name in ("corset", "voxel", "parts", "drr", "pose", "skull"):
        assert (name in listed) == (name in TASKS), name
    for name in TASKS:
        assert load_task(name).name == name


def test_demo_verdicts_reference_rows_and_failures(recon, monkeypatch):
    """Reference rows carry no verdict and never fail the demo; a missed target exits 1."""
    import json

    import recon.pipelines.common.demo as demo

    def passing(workdir, seed, track):
        return [
            demo.DemoRow("learned", "IoU", 0.6, ">= baseline + 0.1", True),
            demo.DemoRow("learned", "baseline IoU", 0.2, "reference", None),
        ]

    def failing(workdir, seed, track):
        return [demo.DemoRow("learned", "IoU", 0.21, ">= baseline + 0.1", False)]

    monkeypatch.setattr(demo, "STEPS", [("passing", passing)])
    code, out, _ = recon("demo", "--json")
    rows = json.loads(out)["rows"]
    assert code == 0 and [r["ok"] for r in rows] == [True, None]
    code, out, _ = recon("demo")
    assert code == 0 and "yes" in out and "NO" not in out
    monkeypatch.setattr(demo, "STEPS", [("passing", passing), ("failing", failing)])
    code, out, err = recon("demo")
    assert code == 1 and "NO" in out and "missed its target" in err
