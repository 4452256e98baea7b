"""The command-line contract: version, help, lazy imports, error lines and exit codes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Annotated

import pytest
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


def test_command_modules_evaluate_their_annotations_at_import():
    """Postponed (string) annotations in recon/cli made Typer compile and evaluate every one
    of them again each time the commands are built: about 40 ms of every --help."""
    from pathlib import Path

    import recon.cli

    for module in sorted(Path(recon.cli.__file__).parent.glob("*.py")):
        assert "from __future__ import annotations" not in module.read_text(), module.name


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
    code, out, err = recon("frobnicate")
    assert code == 2 and out == ""
    assert err == "error: no such command 'frobnicate'; see 'recon --help'\n"


USAGE_ERRORS = [
    (["project", "--nope", "m.stl", "-o", "v"], "no such option: --nope", "recon project"),
    (["project", "-o", "v"], "missing argument 'mesh'", "recon project"),
    (["project", "m.stl"], "missing option '-o' / '--out'", "recon project"),
    (
        ["project", "m.stl", "-o", "v", "--views", "x"],
        "invalid value for '--views'",
        "recon project",
    ),
    (
        ["project", "m.stl", "-o", "v", "--views"],
        "option '--views' requires an argument",
        "recon project",
    ),
    (
        ["project", "m.stl", "-o", "v", "--up", "w"],
        "invalid value for '--up': 'w' is not one of 'x', 'y', 'z'",
        "recon project",
    ),
    (
        ["backproject", "v", "-o", "m.stl", "--method", "marching"],
        "invalid value for '--method': 'marching' is not one of 'poisson', 'vedo'",
        "recon backproject",
    ),
    (
        ["synth", "skull", "-o", "s", "--resolution", "48"],
        "invalid value for '--resolution': '48' is not one of '8', '16', '32', '64', '128'",
        "recon synth skull",
    ),
    (["synth", "nosuch"], "no such command 'nosuch'", "recon synth"),
    (
        [
            "make-drr",
            "--rot",
            "0",
            "0",
            "0",
            "--xyz",
            "0",
            "850",
            "0",
            "-o",
            "a.png",
            "--orientation",
            "LAT",
        ],
        "invalid value for '--orientation': 'LAT' is not one of 'AP', 'PA'",
        "recon make-drr",
    ),  # fmt: skip
    (
        ["project", "a.stl", "b.stl", "-o", "v"],
        "got unexpected extra argument(s) (b.stl)",
        "recon project",
    ),
]


@pytest.mark.parametrize("args,message,command", USAGE_ERRORS)
def test_usage_errors_are_one_line(recon, tmp_path, monkeypatch, args, message, command):
    """Unknown options, missing arguments, bad values and choices: one line naming the option and
    the command's --help, exit 2, no Rich panel; with --json also one JSON error object."""
    monkeypatch.chdir(tmp_path)
    code, out, err = recon(*args)
    assert code == 2 and out == "", err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1, err
    assert err.endswith(f"; see '{command} --help'\n") and "╭" not in err
    # --json last, unless the last word is an option waiting for its value
    with_json = [*args[:-1], "--json", args[-1]] if args[-1] == "--views" else [*args, "--json"]
    code, out, err_json = recon(*with_json)
    assert code == 2 and err_json.startswith(f"error: {message}")
    error = json.loads(out)
    assert error["exit_code"] == 2 and error["error"].startswith(message)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("command", [["project"], ["predict", "corset"], ["register"]])
def test_a_bare_command_prints_its_help(recon, command):
    """No arguments at all: the command's help on stdout, exit 2 (as the README says)."""
    code, out, err = recon(*command)
    assert code == 2 and err == "", err
    assert f"recon {' '.join(command)}" in out and "Example:" in out


@pytest.mark.parametrize(
    "error,line",
    [
        (MemoryError(), "error: out of memory: try smaller sizes"),
        (MemoryError("Unable to allocate 75.0 GiB for an array"), "error: out of memory (Unable"),
        (ZeroDivisionError("division by zero"), "error: ZeroDivisionError: division by zero (set "),
    ],
)
def test_an_unforeseen_error_is_one_line(recon, monkeypatch, tmp_path, error, line):
    """Out of memory said `error: MemoryError: ` and nothing else; every unforeseen error is
    one line, exit 1, and RECON_DEBUG=1 shows the traceback."""
    import recon.pipelines.shapes.meshes as meshes

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(meshes, "make_shape", fail)
    code, out, err = recon("synth", "meshes", "-o", tmp_path / "m", "-q")
    assert code == 1 and err.startswith(line) and err.count("\n") == 1, err
    assert not (tmp_path / "m").exists()
    monkeypatch.setenv("RECON_DEBUG", "1")
    with pytest.raises(type(error)):
        recon("synth", "meshes", "-o", tmp_path / "m", "-q")


def test_help_shows_no_bool_or_comma_metavars(recon, monkeypatch):
    """Flags show no `<bool>` (the help flag included), tuple options one `<type>` per value,
    space separated as they are typed, and several arguments `xrays... <path>` (not
    `<list[Path]>`), in every command's --help."""
    monkeypatch.setenv("COLUMNS", "200")
    root = typer.main.get_command(app)
    names = [""] + [name for name, _ in _commands(root)] + ["synth", "predict"]
    for name in names:
        code, out, _ = recon(*name.split(), "--help")
        assert code == 0 and "--help" in out, name
        assert "<bool>" not in out and "<float,float" not in out, name
        assert "list[" not in out, name
    code, out, _ = recon("register", "--help")
    assert re.search(r"xrays\.\.\.\s+<path>", out), out


def test_command_classes_give_plain_metavars(capsys, monkeypatch):
    """The mechanism itself, on a two-option command: a flag shows no type, a tuple option one
    `<type>` per value, and an option's own metavar is kept."""
    from recon.cli.common import ReconCommand, ReconGroup

    demo = typer.Typer(cls=ReconGroup, rich_markup_mode="rich")

    @demo.command("sub", cls=ReconCommand)
    def sub(
        rot: Annotated[tuple[float, float, float], typer.Option()] = (0.0, 0.0, 0.0),
        xy: Annotated[tuple[int, int], typer.Option(metavar="X Y")] = (1, 2),
        fast: Annotated[bool, typer.Option("--fast")] = False,
    ) -> None:
        """A command."""

    @demo.command("other", cls=ReconCommand)
    def other() -> None:
        """Another."""

    monkeypatch.setenv("COLUMNS", "200")
    code = typer.main.get_command(demo).main(["sub", "--help"], "demo", standalone_mode=False)
    out = capsys.readouterr().out
    assert code == 0 and "--rot" in out and "--fast" in out
    assert "<float> <float> <float>" in out and "X Y" in out
    assert "<bool>" not in out and "<float,float" not in out and "<int> <int>" not in out


def test_subcommand_help_converts_no_values():
    """A subcommand's --help reads the group's options without building value converters, so
    Typer's pydantic-based coercion is not imported (it cost about 150 ms of start-up)."""
    probe = (
        "import sys\n"
        "from recon.cli.app import main\n"
        "for words in (['project', '--help'], ['synth', 'meshes', '--help']):\n"
        "    try:\n        main(words)\n    except SystemExit:\n        pass\n"
        "print('pydantic' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False"


def test_unknown_training_task_is_one_line(recon):
    code, out, err = recon("train", "nosuchtask", "-o", "unused")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "'nosuchtask'" in err and "voxel" in err


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
        wide = _description(recon, monkeypatch, command, 2000)
        broken = [line for line in wide if not line.endswith((".", ":", ")", "?", "!"))]
        broken = [line for line in broken if not line.startswith("Example:")]
        assert not broken, f"recon {command} --help breaks a sentence: {broken[0]!r}"
        example = [line for line in wide if line.startswith("Example:")]
        assert example and example[0] in _description(recon, monkeypatch, command, 100), command


def test_train_help_lists_only_tasks_that_run(recon, monkeypatch):
    from recon.pipelines.common.tasks import TASKS, load_task

    monkeypatch.setenv("COLUMNS", "300")
    code, out, _ = recon("train", "--help")
    listed = re.search(r"\btask\s+<([\w|]+)>", out)[1].split("|")
    assert code == 0 and sorted(listed) == sorted(TASKS)
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


def test_demo_help_names_every_step_in_order(recon, monkeypatch):
    from recon.cli.demo import STEP_NAMES
    from recon.pipelines.common.demo import STEPS

    assert tuple(name for name, _ in STEPS) == STEP_NAMES
    monkeypatch.setenv("COLUMNS", "200")
    code, text, _ = recon("demo", "--help")
    assert code == 0 and ", ".join(STEP_NAMES) in " ".join(text.split())


def _output_commands():
    root = typer.main.get_command(app)
    for name, command in _commands(root):
        if any("-o" in getattr(p, "opts", []) for p in command.params):
            yield name


@pytest.mark.parametrize("command", list(_output_commands()))
@pytest.mark.parametrize("flag", ["--json", "--overwrite", "-q"])
def test_an_output_option_followed_by_a_flag_is_refused(
    recon, tmp_path, monkeypatch, command, flag
):
    """`-o --json` made Click take --json as the output path: a file or folder named `--json`
    was written (and the flag ignored)."""
    monkeypatch.chdir(tmp_path)
    code, _, err = recon(*command.split(), "-o", flag)
    assert code == 2, err
    assert err.startswith(f"error: -o/--out needs a path; got the flag {flag}; see 'recon ")
    assert err.count("\n") == 1, err
    assert not list(tmp_path.iterdir())


def test_a_project_output_folder_named_like_a_flag_is_refused_before_work(
    recon, shapes, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    code, out, err = recon("project", shapes / "sphere.stl", "-o", "--json", "--size", "8")
    assert code == 2 and err.count("\n") == 1, err
    assert json.loads(out) == {
        "error": "-o/--out needs a path; got the flag --json",
        "exit_code": 2,
    }
    assert not list(tmp_path.iterdir())
    code, _, err = recon("project", shapes / "sphere.stl", "--size", "--views", "-o", "v")
    assert code == 2 and "--size needs a value; got the option --views" in err, err
    assert not list(tmp_path.iterdir())
    # an option of three values said "needs a value"
    code, _, err = recon("make-drr", "--rot", "0", "0", "--xyz", "0", "850", "0", "-o", "d.png")
    assert code == 2 and "--rot needs 3 values; got the option --xyz" in err, err
    code, _, err = recon("project", shapes / "sphere.stl", "-o", "./--json", "--size", "8", "-q")
    assert code == 0 and (tmp_path / "--json" / "views.json").is_file(), err


def _swallowing_stop(function):
    """function, first sending this process SIGINT inside a try that swallows it, as trimesh
    does with a KeyboardInterrupt raised while it imports an optional module."""
    import os
    import signal
    import time

    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT is handled by the test runner here")

    def wrapper(*args, **kwargs):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # the handler runs here, raising KeyboardInterrupt
        except BaseException:  # noqa: BLE001, S110 - what the library does
            pass
        return function(*args, **kwargs)

    return wrapper


def test_a_stop_a_library_swallowed_is_raised_again_at_the_next_item(recon, tmp_path, monkeypatch):
    """Ctrl-C while trimesh imported: the command ran to its end, printed its table, wrote every
    output and then exited 130 "interrupted". A progress loop now raises the stop again."""
    from recon.pipelines.shapes import meshes

    monkeypatch.setattr(meshes, "make_shape", _swallowing_stop(meshes.make_shape))
    code, out, err = recon("synth", "meshes", "-o", tmp_path / "s", "--shapes", "box,torus")
    assert code == 130 and err.strip().splitlines()[-1].startswith("interrupted"), err
    assert not (tmp_path / "s").exists() and out == ""


@pytest.mark.parametrize("batch", [[], ["--skip-done"]])
def test_a_stopped_run_says_what_it_did_not_keep(recon, tmp_path, monkeypatch, batch):
    """A run without --skip-done stopped after some outputs were made kept none of them and said
    only "interrupted"; its line now says so and how to keep them. With --skip-done the made
    ones stay, and the line says so and how to go on (it was plain "interrupted")."""
    from recon.pipelines.shapes import meshes

    made, real = [], meshes.make_shape

    def stopped_at_the_third(name):
        if len(made) == 2:
            raise KeyboardInterrupt
        made.append(name)
        return real(name)

    monkeypatch.setattr(meshes, "make_shape", stopped_at_the_third)
    out = tmp_path / "s"
    code, _, err = recon("synth", "meshes", "-o", out, "--shapes", "box,torus,sphere", *batch)
    assert code == 130 and len(err.strip().splitlines()) == 1, err
    if batch:
        assert err == (
            f"interrupted (the outputs made so far are kept in {out}; the same command with "
            "--skip-done makes the rest)\n"
        )
        assert sorted(p.name for p in out.iterdir()) == made_files(made)
    else:
        assert err == (
            "interrupted (the 2 files made so far not kept; with --skip-done each output stays "
            "as it is made)\n"
        )
        assert not out.exists()


def made_files(names):
    return sorted(f"{name}.stl" for name in names)


def test_a_stop_swallowed_after_the_last_item_lets_the_finished_command_succeed(
    recon, tmp_path, monkeypatch
):
    """With no loop left to stop in, the outputs are whole: exit 0 with a warning (was 130
    "interrupted" after the success table, beside complete outputs)."""
    from recon.pipelines.common import outputs

    monkeypatch.setattr(outputs, "run_record", _swallowing_stop(outputs.run_record))
    code, _, err = recon("synth", "meshes", "-o", tmp_path / "s", "--shapes", "box", "-q")
    assert code == 0, err
    assert "warning: the stop (Ctrl-C) came while a library was loading" in err
    assert (tmp_path / "s" / "box.stl").is_file() and (tmp_path / "s" / "run.json").is_file()


LATE_STOP = """
import os, signal, sys, time
real_exit, stop = sys.exit, getattr(signal, sys.argv[1])

def exit_after_a_stop(code=0):  # Ctrl-C as the finished command winds down
    os.kill(os.getpid(), stop)
    time.sleep(0.2)
    real_exit(code)

sys.exit = exit_after_a_stop
sys.argv = ["recon", "synth", "meshes", "-o", sys.argv[2], "--shapes", "box", "--json"]
from recon.cli.app import main
main()
"""


@pytest.mark.parametrize("stop", ["SIGINT", "SIGTERM"])
def test_a_stop_after_the_command_finished_keeps_its_exit_status(tmp_path, stop):
    """Ctrl-C or SIGTERM in the half second after a command printed its result (the interpreter
    winding down) gave exit 130/143 beside the success JSON and whole outputs: a batch script
    took the finished run for a failed one. The process now ends with the command's status."""
    import subprocess
    import sys

    out = tmp_path / "s"
    done = subprocess.run(
        [sys.executable, "-c", LATE_STOP, stop, str(out)], capture_output=True, text=True
    )
    assert done.returncode == 0, (done.returncode, done.stderr)
    assert json.loads(done.stdout)["shapes"]["box"]["faces"] > 0 and (out / "box.stl").is_file()


def test_a_shard_under_srun_prints_its_json_error(recon, monkeypatch, tmp_path):
    """`srun -n2 recon synth ... --shard $((SLURM_PROCID+1))/2 --json`: each process is a run of
    its own and prints its failure's JSON object; only a training run's other ranks leave it to
    rank 0 (one object per run)."""
    monkeypatch.setenv("SLURM_PROCID", "1")
    code, out, err = recon("synth", "meshes", "-o", tmp_path / "x", "--shard", "3/2", "--json")
    assert code == 2 and json.loads(out)["exit_code"] == 2 and "--shard" in err
    code, out, err = recon(
        "train", "voxel", "--data", tmp_path / "none", "-o", tmp_path / "r", "--json"
    )
    assert code == 2 and out == "" and "error:" in err
