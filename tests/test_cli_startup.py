"""Start-up: a run imports and converts only the command it runs; the list of commands in a
group's --help comes from app.COMMANDS and must read exactly as the commands' own help."""

import importlib
import inspect
import subprocess
import sys

import pytest
import typer.main

from recon.cli.app import COMMANDS, app
from recon.cli.common import ReconCommand, prose


def _entries(entries=COMMANDS, prefix: str = ""):
    for name, entry in entries.items():
        yield f"{prefix}{name}", entry
        if entry.commands is not None:
            yield from _entries(entry.commands, f"{prefix}{name} ")


@pytest.mark.parametrize("path,entry", list(_entries()))
def test_each_short_help_is_the_first_paragraph_of_the_help(path, entry):
    target = getattr(importlib.import_module(f"recon.cli.{entry.module}"), entry.attribute)
    if entry.commands is None:
        shown = prose(target.__doc__)
    else:  # a group's Typer app
        shown = inspect.cleandoc(target.info.help)
        registered = {info.callback for info in target.registered_commands}
        in_table = {
            getattr(importlib.import_module(f"recon.cli.{e.module}"), e.attribute)
            for e in entry.commands.values()
        }
        assert registered <= in_table, f"recon {path}: a command missing from COMMANDS"
    assert entry.short_help == shown.split("\n\n")[0], f"recon {path}: update app.COMMANDS"


def test_the_listed_commands_read_as_the_loaded_commands(capsys, monkeypatch):
    """`recon --help` (and a group's) rendered from COMMANDS alone, then again once every
    command is imported and converted: the same text."""
    monkeypatch.setenv("COLUMNS", "200")
    root = typer.main.get_command(app)
    pages = {}
    for words in ([], ["synth"], ["predict"]):
        root.main([*words, "--help"], prog_name="recon", standalone_mode=False)
        pages[tuple(words)] = capsys.readouterr().out
    assert "synth meshes" not in pages[()] and "Write watertight test shapes" in pages[("synth",)]
    for name, command in root.commands.items():  # loads them all
        assert name in pages[()]
        for sub_name, sub_command in getattr(command, "commands", {}).items():
            assert isinstance(sub_command, ReconCommand) and sub_name in pages[(name,)]
    for words, page in pages.items():
        root.main([*words, "--help"], prog_name="recon", standalone_mode=False)
        assert capsys.readouterr().out == page, words


def test_every_command_keeps_its_class_and_bare_run_behaviour():
    root = typer.main.get_command(app)
    assert list(root.commands) == list(COMMANDS)
    for path, entry in _entries():
        command = root
        for word in path.split():
            command = command.commands[word]
        assert command.name == path.split()[-1]
        assert command.no_args_is_help == (entry.commands is not None or entry.no_args_is_help)
        if entry.commands is None:
            assert type(command) is ReconCommand, path


def test_a_mistyped_command_suggests_the_right_one(recon):
    code, out, err = recon("projct")
    assert code == 2 and out == ""
    assert err.startswith("error: no such command 'projct'. Did you mean 'project'"), err
    code, _, err = recon("synth", "mehses")
    assert code == 2 and "Did you mean 'meshes'?; see 'recon synth --help'" in err, err


PROBE = """
import io, sys, contextlib
from recon.cli.app import main
try:
    with contextlib.redirect_stdout(io.StringIO()):
        main(sys.argv[1:])
except SystemExit:
    pass
print(sorted(m for m in sys.modules if m.startswith("recon.cli.")))
"""


@pytest.mark.parametrize(
    "words,imported",
    [
        (["--help"], []),
        (["--version"], []),
        (["synth", "--help"], ["synth"]),
        (["predict", "--help"], ["predict"]),
        (["project", "--help"], ["project"]),
        (["synth", "pairs", "--help"], ["drr", "synth"]),
    ],
)
def test_a_run_imports_only_the_command_it_runs(words, imported):
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *words], capture_output=True, text=True, check=True
    )
    modules = sorted(
        [
            "recon.cli.app",
            "recon.cli.commands",
            "recon.cli.common",
            *(f"recon.cli.{m}" for m in imported),
        ]
    )
    assert done.stdout.strip().splitlines()[-1] == repr(modules), done.stderr
