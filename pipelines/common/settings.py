"""What a training task is and how its settings resolve: TrainConfig, TaskSpec, RunOptions.

A setting is a dataclass field; `setting(default, help, low, high)` gives it the help text and
valid range (or choices) that `recon train TASK --print-config` prints and that every value
from --set, --config or a flag is checked against before anything is written. Resolution order:
task defaults < --config YAML < flags and --set. A task may rename a setting (TaskSpec.renamed,
old -> new): the old key still works for one release, with a one-line notice on stderr; the
old and the new key given with different values are refused, wherever each was given.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recon.pipelines.common.errors import BadInput

if TYPE_CHECKING:
    from recon.pipelines.common.examples import ExampleSpec

SEED_MAX = 2**32 - 1
# The only settings a resume may change: data too, for the same set moved (to node-local
# scratch on a cluster, or a run folder resumed on another machine).
RESUMABLE_SETTINGS = ("epochs", "num_workers", "data")
# What a resume may change, as the flags say it (with the run options: time, batches, devices)
RESUME_MAY_CHANGE = (
    "--epochs, --workers, --max-time, --limit-batches, --data (the same set moved) and the "
    "scale-out flags"
)


def setting(
    default: Any,
    help: str,  # noqa: A002 - the word users read in --print-config
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    choices: tuple[str, ...] | None = None,
) -> Any:
    """A config field with its help text and valid range [low, high] (ends open on request)
    or its choices; a list default is copied per instance."""
    metadata = {
        "help": help,
        "low": low,
        "high": high,
        "low_open": low_open,
        "high_open": high_open,
        "choices": choices,
    }
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class TrainConfig:
    """Fields every task has. Tasks subclass this with their own fields and defaults (a
    subclass may redeclare a field with a plain default: its help and range stay these)."""

    data: str | None = setting(None, "data set root")
    epochs: int = setting(10, "passes over the training set", 1, 100_000)
    batch_size: int = setting(
        16, "samples per step, per process (the global batch is batch_size x processes)", 1, 65_536
    )
    lr: float = setting(2e-4, "learning rate", 0, 10, low_open=True)
    seed: int = setting(0, "random seed (split, shuffling, initialisation)", 0, SEED_MAX)
    num_workers: int = setting(0, "data-loading worker processes", 0, 256)
    val_fraction: float = setting(
        0.2, "share of the data held out for validation", 0, 1, low_open=True, high_open=True
    )


EXAMPLES_SETTING_HELP = "rows in each RUN/examples grid (0 = none)"


def examples_setting(default: int = 4):
    """The `examples` setting of a task that writes example grids."""
    return setting(default, EXAMPLES_SETTING_HELP, 0, 64)


@dataclass(frozen=True)
class Baseline:
    """Validation metric `metric` must beat the logged metric `baseline` (e.g. val/iou and
    val/iou_mean_shape); `label` names the baseline in curves.png and run.json."""

    metric: str
    baseline: str
    label: str
    mode: str = "max"  # "max": higher beats the baseline; "min": lower does


@dataclass(frozen=True)
class TaskSpec:
    name: str
    config: type[TrainConfig]
    build: Callable[[Any], tuple[Any, Any]]  # cfg -> (LightningModule, LightningDataModule)
    monitor: str  # validation metric for the best checkpoint, e.g. "val/iou"
    mode: str = "max"  # "max" | "min"
    # early input validation, raises BadInput: (cfg, the --resume checkpoint or None) -> None
    check: Callable[[Any, Path | None], None] | None = None
    # the part of check that reads no files, cfg -> None (raises BadInput): --print-config makes
    # it too, so that it refuses what a run would refuse of the settings alone
    check_settings: Callable[[Any], None] | None = None
    baselines: tuple[Baseline, ...] = ()  # what each metric must beat (curves.png, run.json)
    renamed: dict[str, str] = field(default_factory=dict)  # old setting name -> new name
    # what RUN/examples/epoch_NNN.png shows; the config's `examples` setting says how many rows
    # (0 = none)
    examples: ExampleSpec | None = None
    # cfg -> the fewest samples a training batch may hold (2 where batch normalisation would see
    # one value per channel from a single sample); None = 1
    min_batch: Callable[[Any], int] | None = None
    # common settings the task does not read (pose renders its own data: no data, no split);
    # left out of --print-config
    unused: tuple[str, ...] = ()
    # each optimizer steps part of the model (a GAN's generator and discriminator): DDP must
    # look for the parameters a backward pass leaves without gradient
    ddp_find_unused: bool = False


@dataclass
class RunOptions:
    """How to run, as opposed to what to learn (not part of the task config)."""

    out: Path
    resume: Path | None = None
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    devices: str = "auto"  # Lightning devices: "auto", a count, or a list "0,1"
    num_nodes: int = 1
    strategy: str = "auto"  # e.g. ddp
    precision: str = "32-true"  # e.g. bf16-mixed, 16-mixed
    channels_last: bool = False  # 2D convolution weights stored NHWC (see ChannelsLast)
    max_time: str | None = None  # "DD:HH:MM:SS", or minutes
    # batches per epoch: a whole number counts them (1 = one batch); a number with a decimal
    # point (a float) in (0, 1] is a fraction of each epoch (1.0 = all); see batch_limit
    limit_batches: str | float | int | None = None
    logger: str = "csv"  # csv | tensorboard (TensorBoard in addition to metrics.csv)
    overwrite: bool = False
    quiet: bool = False
    extra_callbacks: list = field(default_factory=list)
    inputs: tuple = ()  # files the run reads that are not settings (the --config file)
    announce: Callable[[Path], None] | None = None  # told the run folder once inputs are checked


def config_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The config as plain types (for YAML, JSON and weights_only checkpoints)."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(cfg).items()}


def describe_settings(task: TaskSpec, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every setting of task: name, default, help and valid range or choices, in field order;
    with values (a resolved config's, config_dict), each setting's value there too."""
    described = []
    defaults = config_dict(task.config())
    for spec in dataclasses.fields(task.config):
        if spec.name in task.unused:
            continue
        info = _info(task.config, spec.name)
        described.append(
            {
                "name": spec.name,
                "default": defaults[spec.name],
                "help": info.get("help", ""),
                "valid": _stated(info, defaults[spec.name]),
            }
            | ({"value": values[spec.name]} if values is not None else {})
        )
    return described


def settings_yaml(task: TaskSpec, values: dict[str, Any] | None = None) -> str:
    """describe_settings as a YAML file usable with --config: `name: default  # help (valid)`;
    with values (a resolved config's), `name: value` instead."""
    import yaml

    lines = [f"# recon train {task.name}: settings and their defaults (--config FILE, --set K=V)"]
    if values is not None:
        lines = [f"# recon train {task.name}: settings as --config, flags and --set make them"]
    for item in describe_settings(task, values):
        value = yaml.safe_dump(
            {item["name"]: item.get("value", item["default"])},
            default_flow_style=True,
            width=1_000_000,
        )
        comment = item["help"] + (f"; {item['valid']}" if item["valid"] else "")
        lines.append(f"{value.strip()[1:-1]}  # {comment}")
    if task.renamed:
        old = ", ".join(f"{o} (now {n})" for o, n in task.renamed.items())
        lines.append(f"# deprecated names still read: {old}")
    return "\n".join(lines) + "\n"


def requested_settings(
    task: TaskSpec,
    config_file: Path | None,
    overrides: dict[str, Any],
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The settings a user asked for: the YAML file, then overrides (None values are skipped);
    unknown names, wrong types and values out of range are refused. labels names where an
    override came from (e.g. {"epochs": "--epochs"}) for the error message."""
    import yaml

    labels = dict(labels or {})
    values: dict[str, Any] = {}
    loaded: dict[str, Any] = {}
    path = None if config_file is None else Path(config_file)
    if path is not None:
        if path.is_dir():
            raise BadInput(f"{path}: is a folder, not a config file")
        if not path.is_file():
            raise BadInput(f"{path}: no such config file")
        try:
            loaded = yaml.load(path.read_text(), Loader=_unique_key_loader()) or {}
        except DuplicateKey as error:
            raise BadInput(f"{path}: {error}") from error
        except yaml.YAMLError as error:
            raise BadInput(f"{path}: not valid YAML ({_yaml_problem(error)})") from error
        except (OSError, UnicodeDecodeError) as error:
            raise BadInput(f"{path}: cannot read the config file ({error})") from error
        if not isinstance(loaded, dict) or not all(isinstance(k, str) for k in loaded):
            raise BadInput(f"{path}: a config file must be a mapping of field: value")
        # a run's own config.yaml names its task: fine for that task, refused for another
        named = loaded.pop("task", task.name)
        if named is None or named == "":
            raise BadInput(f"{path}: not settings of task {task.name!r} (it records no task)")
        if named != task.name:
            raise BadInput(f"{path}: settings of task {named!r}, not {task.name!r}")
    given = {k: v for k, v in overrides.items() if v is not None}
    _refuse_renamed_twice(task, path, loaded, given, labels)
    for key in loaded:  # under the name the file gives
        labels.setdefault(key, f"{path}: setting {key}")
    loaded, notices = _renamed(task, loaded, lambda name: f"{path}: setting {name}")
    values.update(loaded)
    given, more = _renamed(task, given, lambda name: labels.get(name, f"setting {name}"))
    notices += more
    for old, new in task.renamed.items():
        if old in labels:
            labels.setdefault(new, f"{labels[old]} (now {new})")
    values.update(given)
    fields = {f.name: f for f in dataclasses.fields(task.config)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        given_as = "; ".join(labels.get(k, f"setting {k}") for k in unknown)
        raise BadInput(
            f"task {task.name} has no setting {', '.join(unknown)} (given as {given_as}; its "
            f"settings: {', '.join(fields)})"
        )
    checked = {
        k: check_setting(task.config, k, v, labels.get(k, f"setting {k}"))
        for k, v in values.items()
    }
    for line in notices:  # after every check: bad input is its one line alone
        sys.stderr.write(line + "\n")
    return checked


def renamed_settings(
    task: TaskSpec,
    values: dict[str, Any],
    label: Callable[[str], str] = lambda name: f"setting {name}",
    notice: bool = True,
) -> dict[str, Any]:
    """values with the task's old setting names replaced by the new ones (a one-line notice on
    stderr for each, naming label(old)); a value under the new name wins over one under the
    old (requested_settings refuses a user's two names for one setting with different
    values)."""
    result, notices = _renamed(task, values, label)
    if notice:
        for line in notices:
            sys.stderr.write(line + "\n")
    return result


def _renamed(
    task: TaskSpec, values: dict[str, Any], label: Callable[[str], str]
) -> tuple[dict[str, Any], list[str]]:
    """renamed_settings without the writing: values under the new names, and the notices."""
    result = dict(values)
    notices = []
    for old, new in task.renamed.items():
        if old not in result:
            continue
        value = result.pop(old)
        result.setdefault(new, value)
        notices.append(
            f"warning: {label(old)} is deprecated and goes away in the next release; use {new}"
        )
    return result, notices


def _refuse_renamed_twice(
    task: TaskSpec,
    config_file: Path | None,
    loaded: dict[str, Any],
    given: dict[str, Any],
    labels: dict[str, str],
) -> None:
    """BadInput when a renamed setting ends up with different values under its new and its old
    name once flags and --set override the config file name by name: both in the config file,
    both given as flags or --set, or one in each."""
    for old, new in task.renamed.items():
        if not ({old, new} <= set(loaded) | set(given)):
            continue
        value = {name: given[name] if name in given else loaded[name] for name in (old, new)}
        if _same(task, new, value[new], value[old]):
            continue
        shown = {name: _shown(value[name]) for name in (old, new)}
        if old not in given and new not in given:
            raise BadInput(
                f"{config_file}: {new} {shown[new]} and {old} {shown[old]} (its old name) "
                f"disagree: give {new} only"
            )
        if old in given and new in given:
            given_as = {
                name: _given_as(labels.get(name, f"setting {name}"), value[name])
                for name in (old, new)
            }
            raise BadInput(
                f"{given_as[new]} and {given_as[old]} (its old name) disagree: give {new} only"
            )
        where = {
            name: f"from {_source(labels.get(name))}" if name in given else f"in {config_file}"
            for name in (old, new)
        }
        hint = ""
        if old not in given:  # the file's old name stays under a new name given on the line
            hint = (
                f" (remove {old} from the file)"
                if new in loaded
                else f" (rename {old} to {new} in the file)"
            )
        raise BadInput(
            f"{new} {shown[new]} ({where[new]}) and {old} {shown[old]} (its old name, "
            f"{where[old]}) disagree: give {new} only{hint}"
        )


def _source(label: str | None) -> str:
    """Where an override came from, in words: --set, a flag, or the overrides (no label)."""
    if not label:
        return "the overrides"
    return "--set" if label.startswith("--set") else label


def _same(task: TaskSpec, name: str, a: Any, b: Any) -> bool:
    """a and b the same value of setting name: equal, equal as its type, or the same path."""
    if same_setting(a, b):
        return True
    spec = {f.name: f for f in dataclasses.fields(task.config)}.get(name)
    if spec is None:
        return False
    try:
        default = _default(spec)
        return _coerce(default, a, name) == _coerce(default, b, name)
    except BadInput:
        return False


def _shown(value: Any) -> str:
    """A setting's value as the user wrote it in YAML (true, null, 64, a path)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _given_as(label: str, value: Any) -> str:
    """How a value was given: --set size=64, --epochs 3 (a flag), or setting size 64."""
    if label.startswith("--set "):
        return f"{label}={_shown(value)}"
    return f"{label} {_shown(value)}"


def resolve_config(
    task: TaskSpec,
    config_file: Path | None,
    overrides: dict[str, Any],
    labels: dict[str, str] | None = None,
) -> TrainConfig:
    """Task defaults, then the YAML file, then overrides (None values are skipped); the files
    and folders settings name (PATH_SETTINGS) as absolute paths, so that the saved config
    resumes from any folder."""
    values = requested_settings(task, config_file, overrides, labels)
    for name in PATH_SETTINGS:
        if values.get(name):
            values[name] = str(Path(values[name]).expanduser().absolute())
    return task.config(**values)


# settings that name a file or folder: a run started in one folder resumes from any other
PATH_SETTINGS = ("data", "volume", "finetune", "pretrained_weights")


def resume_config(
    task: TaskSpec,
    checkpoint: Path,
    config_file: Path | None,
    overrides: dict[str, Any],
    labels: dict[str, str] | None = None,
) -> TrainConfig:
    """The config saved in a last.ckpt of task, with only RESUMABLE_SETTINGS changed by the
    YAML file or flags; asking for any other setting to differ is refused."""
    from recon.pipelines.common.checkpoints import load_resume_checkpoint

    saved = load_resume_checkpoint(checkpoint, task.name).config
    saved = renamed_settings(task, saved, lambda name: f"{checkpoint}: setting {name}")
    requested = requested_settings(task, config_file, overrides, labels)
    changed = sorted(
        k
        for k, v in requested.items()
        if k not in RESUMABLE_SETTINGS and not same_setting(saved.get(k), v)
    )
    if changed:
        raise BadInput(
            f"{checkpoint}: a resumed run keeps the checkpoint's settings, and these differ "
            f"from them: {', '.join(changed)}; only {RESUME_MAY_CHANGE} may change (start a "
            "new run to change the others)"
        )
    resumable = {k: v for k, v in requested.items() if k in RESUMABLE_SETTINGS}
    data = resumable.get("data", saved.get("data"))
    if data and "data" not in resumable and not Path(data).expanduser().absolute().exists():
        raise BadInput(
            f"{checkpoint}: its data root {data} is not there; pass --data where the set is now"
        )
    return resolve_config(task, None, {**saved, **resumable})


def require_same_config(path: Path, saved: dict[str, Any], config: dict[str, Any]) -> None:
    """BadInput when config differs from a checkpoint's saved config beyond what a resume may
    change."""
    changed = sorted(
        k
        for k, v in config.items()
        if k not in RESUMABLE_SETTINGS and k in saved and not same_setting(saved[k], v)
    )
    if changed:
        raise BadInput(
            f"{path}: the run's settings {', '.join(changed)} differ from the checkpoint's "
            f"(a resume may change only {RESUME_MAY_CHANGE})"
        )


def same_setting(saved: Any, value: Any) -> bool:
    """Equal values, or two spellings of the same path."""
    if saved == value:
        return True
    if isinstance(saved, str) and isinstance(value, str):
        return Path(saved).expanduser().resolve() == Path(value).expanduser().resolve()
    return False


def check_setting(config: type[TrainConfig], name: str, value: Any, label: str) -> Any:
    """value as the type of config's field name, inside its stated range or choices; label
    (e.g. "--epochs", "setting epochs") starts the one-line BadInput."""
    spec = {f.name: f for f in dataclasses.fields(config)}[name]
    info = _info(config, name)
    value = _coerce(_default(spec), value, label)
    if isinstance(value, int | float) and not isinstance(value, bool):
        _check_range(info, value, label)
    if isinstance(value, list):
        for item in value:
            _check_range(info, item, label)
    choices = info.get("choices")
    if choices and value not in choices:
        raise BadInput(f"{label} takes one of {', '.join(choices)}, not {value!r}")
    return value


def parse_set(pairs: list[str]) -> dict[str, Any]:
    """--set KEY=VALUE pairs -> dict, values parsed as YAML scalars (numbers, true/false, lists);
    an empty or null VALUE and a KEY given twice are refused, naming the key."""
    import yaml

    result: dict[str, Any] = {}
    given: dict[str, str] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise BadInput(f"--set takes KEY=VALUE, not {pair!r}")
        if not raw.strip():
            raise BadInput(f"--set {key}= has no value (give {key}=VALUE; see --print-config)")
        if key in given:
            raise BadInput(
                f"--set {key} is given twice ({key}={given[key]} and {key}={raw}); give it once"
            )
        try:
            result[key] = yaml.load(raw, Loader=_unique_key_loader())
        except yaml.YAMLError as error:
            raise BadInput(f"--set {key}: cannot parse {raw!r}") from error
        if result[key] is None:  # null, ~: it was skipped as not given, the default used unsaid
            raise BadInput(
                f"--set {key}={raw.strip()} gives no value (YAML null); give {key}=VALUE, or "
                "leave it out for the default (see --print-config)"
            )
        given[key] = raw
    return result


def _yaml_problem(error) -> str:
    """What a YAMLError says is wrong and where: 'found character '\\t' that cannot start any
    token, line 1 column 8' (its first line alone, 'while scanning for the next token', said
    neither)."""
    mark, problem = getattr(error, "problem_mark", None), getattr(error, "problem", None)
    if mark is None or not problem:
        return str(error).splitlines()[0]
    return f"{problem}, line {mark.line + 1} column {mark.column + 1}"


class DuplicateKey(Exception):
    """A YAML mapping names a key twice (yaml.safe_load would keep the last silently)."""


def _unique_key_loader():
    """A yaml.SafeLoader that raises DuplicateKey for a mapping naming a key twice (keys merged
    in with `<<` may still be overridden, as YAML intends)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            lines: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key, line = self.construct_object(key_node, deep=deep), key_node.start_mark.line
                try:
                    first = lines.get(key)
                except TypeError:  # an unhashable key: the stock constructor refuses it
                    continue
                if first is not None:
                    raise DuplicateKey(
                        f"setting {key} is given twice (lines {first + 1} and {line + 1}); keep one"
                    )
                lines[key] = line
            return super().construct_mapping(node, deep=deep)

        def construct_yaml_int(self, node):
            """YAML 1.2's integers: 010 is ten (1.1 read eight), 0o10 eight, 0x10 sixteen."""
            text = self.construct_scalar(node).replace("_", "")
            sign, digits = (-1, text[1:]) if text[:1] == "-" else (1, text.lstrip("+"))
            base = {"0o": 8, "0x": 16, "0b": 2}.get(digits[:2].lower(), 10)
            return sign * int(digits[2:] if base != 10 else digits, base)

    UniqueKeyLoader.add_constructor("tag:yaml.org,2002:int", UniqueKeyLoader.construct_yaml_int)
    # Numbers and booleans as YAML 1.2 reads them: yes/no/on/off stay text (1.1 read them as
    # booleans, so `--set name=no` changed type unsaid); 1.1's base-60 numbers (1:30 read as
    # 90, 1:30.5 as 90.5) stay text, which a setting then refuses, where they passed for other
    # numbers unsaid; 1e-3 is a float (1.1 wanted 1.0e-3)
    UniqueKeyLoader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if not tag.endswith((":int", ":float", ":bool"))]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    UniqueKeyLoader.add_implicit_resolver(
        "tag:yaml.org,2002:bool",
        re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
        list("tTfF"),
    )
    UniqueKeyLoader.add_implicit_resolver(
        "tag:yaml.org,2002:int",
        re.compile(r"^[-+]?(?:0b[01_]+|0o[0-7_]+|0x[0-9a-fA-F_]+|[0-9][0-9_]*)$"),
        list("-+0123456789"),
    )
    UniqueKeyLoader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(
            r"^(?:[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?"
            r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
        ),
        list("-+.0123456789"),
    )
    return UniqueKeyLoader


def _info(config: type, name: str) -> dict[str, Any]:
    """The help/range metadata of a setting, from the nearest class in the MRO that states it."""
    for klass in config.__mro__:
        spec = getattr(klass, "__dataclass_fields__", {}).get(name)
        if spec is not None and "help" in spec.metadata:
            return dict(spec.metadata)
    return {}


def _default(spec: dataclasses.Field) -> Any:
    if spec.default is not dataclasses.MISSING:
        return spec.default
    if spec.default_factory is not dataclasses.MISSING:
        return spec.default_factory()
    return None


def _coerce(default: Any, value: Any, label: str) -> Any:
    """value as the type of default (bool, int, float, list of numbers, str or None)."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise BadInput(f"{label} takes true or false, not {value!r}")
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise BadInput(f"{label} takes a whole number, not {value!r}")
    if isinstance(default, float):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads 1e-3 (no dot) as text
            try:
                return float(value)
            except ValueError:
                pass
        raise BadInput(f"{label} takes a number, not {value!r}")
    if isinstance(default, list):
        numbers = isinstance(value, list) and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value
        )
        if not numbers or len(value) != len(default):
            raise BadInput(f"{label} takes a list of {len(default)} numbers, not {value!r}")
        return [float(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if value is not None and not isinstance(value, str):
        raise BadInput(f"{label} takes a text value (a path or a name), not {value!r}")
    return value


def _check_range(info: dict[str, Any], value: float, label: str) -> None:
    low, high = info.get("low"), info.get("high")
    inside = math.isfinite(value)
    if low is not None:
        inside = inside and (value > low if info.get("low_open") else value >= low)
    if high is not None:
        inside = inside and (value < high if info.get("high_open") else value <= high)
    if not inside:
        shown = value if isinstance(value, int) else f"{value:g}"
        raise BadInput(f"{label} must be {_stated(info, value)}, not {shown}")


def _stated(info: dict[str, Any], default: Any) -> str:
    """The valid values in words: "in [1, 100000]", "at least 0", "one of a, b"."""
    if info.get("choices"):
        return "one of " + ", ".join(info["choices"])
    low, high = info.get("low"), info.get("high")
    if low is None and high is None:
        return ""
    if high is None:
        return f"{'above' if info.get('low_open') else 'at least'} {_number(low)}"
    if low is None:
        return f"{'below' if info.get('high_open') else 'at most'} {_number(high)}"
    left = "(" if info.get("low_open") else "["
    right = ")" if info.get("high_open") else "]"
    return f"in {left}{_number(low)}, {_number(high)}{right}"


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"
