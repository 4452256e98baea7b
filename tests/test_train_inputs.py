"""`recon train` bad input: every number has a stated range, every fixed choice lists its choices;
each case is one line on stderr, exit 2, and no run folder. Also --print-config and the
corset `image_size` -> `size` rename."""

from __future__ import annotations

import json

import pytest

from recon.pipelines.common.tasks import TASKS

BAD_FLAGS = [
    (["--epochs", "0"], "--epochs must be in [1, 100000], not 0"),
    (["--epochs", "1000001"], "--epochs must be in [1, 100000]"),
    (["--batch-size", "0"], "--batch-size must be in [1, 65536]"),
    (["--lr", "0"], "--lr must be in (0, 10]"),
    (["--lr", "nan"], "--lr must be in (0, 10], not nan"),
    (["--lr", "inf"], "--lr must be in (0, 10]"),
    (["--lr", "-1e-3"], "--lr must be in (0, 10]"),
    (["--seed", "-1"], "--seed must be in [0, 4294967295]"),
    (["--seed", "4294967296"], "--seed must be in [0, 4294967295]"),
    (["--workers", "-1"], "--workers must be in [0, 256]"),
    (["--workers", "100000"], "--workers must be in [0, 256]"),
    (["--max-time", "-5"], "--max-time must be in (0,"),
    (["--max-time", "0"], "--max-time must be in (0,"),
    (["--max-time", "nan"], "--max-time must be in (0,"),
    (["--max-time", "inf"], "--max-time must be in (0,"),
    (["--max-time", "00:00:00:00"], "--max-time 00:00:00:00: must be above 0"),
    (["--max-time", "soon"], "--max-time takes minutes or DD:HH:MM:SS"),
    (["--limit-batches", "1.5"], "--limit-batches takes a fraction in (0, 1] or a whole count"),
    (["--limit-batches", "0"], "--limit-batches takes a fraction"),
    (["--limit-batches", "-2"], "--limit-batches takes a fraction"),
    (["--limit-batches", "nan"], "--limit-batches takes a fraction"),
    (["--devices", "0"], "--devices 0"),
    (["--devices", "-1"], "--devices takes auto, a count or ids"),
    (["--devices", "two"], "--devices takes auto, a count or ids"),
    (["--devices", "2000"], "--devices must be in [1, 1024]"),
    (["--devices", "0,0"], "--devices 0,0: ids must differ"),
    (["--num-nodes", "0"], "--num-nodes 0"),
    (["--num-nodes", "100000"], "--num-nodes 100000"),
    (["--strategy", "nonsense"], "--strategy nonsense: not a strategy (choices: auto, ddp,"),
    (["--precision", "nonsense"], "'32-true', '16-mixed'"),
    (["--logger", "wandb"], "'csv', 'tensorboard'"),
    (["--set", "epochs=many"], "--set epochs takes a whole number, not 'many'"),
    (["--set", "val_fraction=1"], "--set val_fraction must be in (0, 1), not 1"),
    (["--set", "dropout=.nan"], "--set dropout must be in [0, 1), not nan"),
    (["--set", "size=.inf"], "--set size takes a whole number"),
    (["--set", "size=16"], "--set size must be in [32, 4096], not 16"),
    (["--set", "jitter=yes please"], "--set jitter takes a number, not 'yes please'"),
    (["--set", "mean_prior=3"], "--set mean_prior takes true or false"),
    (["--set", "pretrained_weights=5"], "--set pretrained_weights takes a text value"),
    (["--set", "hidden=-4"], "--set hidden must be in [1, 65536], not -4"),
    (["--set", "widht=3"], "task voxel has no setting widht"),
    (["--set", "epochs"], "--set takes KEY=VALUE"),
    (["--set", "epochs="], "--set epochs= has no value (give epochs=VALUE"),
    # null and ~ were skipped as not given: the default trained, exit 0
    (["--set", "epochs=null"], "--set epochs=null gives no value (YAML null); give epochs=VALUE"),
    (["--set", "lr=~"], "--set lr=~ gives no value (YAML null)"),
    (["--set", "epochs=2", "--set", "epochs=3"], "--set epochs is given twice (epochs=2 and"),
    (["--limit-batches", "2.0"], "a fraction has a decimal point, 1.0 = all), not 2.0"),
]


@pytest.mark.parametrize(("flags", "message"), BAD_FLAGS, ids=[" ".join(f) for f, _ in BAD_FLAGS])
def test_bad_flag_is_one_line_exit_2_no_run_folder(recon, pix3d, tmp_path, flags, message):
    out = tmp_path / "run"
    code, stdout, err = recon(
        "train", "voxel", "--data", pix3d, "--device", "cpu", "-o", out, "-q", *flags
    )
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert message in err, err
    assert not out.exists()


@pytest.mark.parametrize(
    ("task", "text", "message"),
    [
        ("voxel", "epochs: many\n", "setting epochs takes a whole number, not 'many'"),
        ("voxel", "lr: .nan\n", "setting lr must be in (0, 10], not nan"),
        ("voxel", "batch_size: 1.5\n", "setting batch_size takes a whole number"),
        ("voxel", "- epochs\n", "a config file must be a mapping"),
        ("voxel", "epochs: [1\n", "not valid YAML"),
        ("parts", "method: magic\n", "setting method takes one of auto, raycast, winding"),
        ("pose", "orientation: XX\n", "setting orientation takes one of AP, PA"),
        ("pose", "nominal_rot_deg: [1, 2]\n", "takes a list of 3 numbers"),
        ("pose", "rot_range_deg: 0\n", "setting rot_range_deg must be in (0, 180]"),
        ("corset", "size: 100000\n", "setting size must be in [64, 4096]"),
        ("skull", "face_weight: -1\n", "setting face_weight must be in [0, 1000]"),
        ("drr", "examples: 1000\n", "setting examples must be in [0, 64]"),
        ("voxel", "epochs: 2\nlr: 1\nepochs: 3\n", "setting epochs is given twice (lines 1 and 3)"),
        ("voxel", "{lr: 0.1, lr: 0.2}\n", "setting lr is given twice"),
        # YAML 1.1's base-60 numbers passed for others: 1:30 trained 90 epochs
        ("voxel", "epochs: 1:30\n", "setting epochs takes a whole number, not '1:30'"),
        # it said "while scanning for the next token": neither the cause nor the place
        (
            "voxel",
            "lr: 0.1\nepochs:\t2\n",
            "found character '\\t' that cannot start any token, line 2 column 8",
        ),
        ("voxel", "lr: 1:30.5\n", "setting lr takes a number, not '1:30.5'"),
    ],
)
def test_bad_config_file_values_name_the_file_and_setting(recon, tmp_path, task, text, message):
    config = tmp_path / "c.yaml"
    config.write_text(text)
    out = tmp_path / "run"
    code, _, err = recon("train", task, "--config", config, "-o", out, "--device", "cpu", "-q")
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert message in err, err
    assert not out.exists()


def test_unknown_task_lists_the_tasks(recon, tmp_path):
    code, _, err = recon("train", "nonsense", "-o", tmp_path / "run")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert all(name in err for name in TASKS)
    assert not (tmp_path / "run").exists()


def test_task_names_of_the_cli_are_the_registry():
    from typing import get_args

    from recon.pipelines.common.tasks import TaskName

    assert sorted(get_args(TaskName)) == sorted(TASKS)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_print_config_lists_every_setting_with_default_and_help(recon, tmp_path, monkeypatch, task):
    import yaml

    from recon.pipelines.common.settings import config_dict
    from recon.pipelines.common.tasks import load_task

    monkeypatch.chdir(tmp_path)
    spec = load_task(task)
    defaults = {k: v for k, v in config_dict(spec.config()).items() if k not in spec.unused}
    assert task != "pose" or spec.unused == ("data", "val_fraction")  # it renders its own data
    code, out, err = recon("train", task, "--print-config")
    assert code == 0, err
    assert yaml.safe_load(out) == defaults  # the printed text works as a --config file
    code, out, err = recon("train", task, "--print-config", "--json")
    assert code == 0, err
    document = json.loads(out)
    assert document["task"] == task
    assert [s["name"] for s in document["settings"]] == list(defaults)
    for item in document["settings"]:
        assert item["help"], item["name"]
        assert item["default"] == defaults[item["name"]]
        number = isinstance(item["default"], int | float) and not isinstance(item["default"], bool)
        assert item["valid"] or not number, item["name"]  # every number states its range
    assert list(tmp_path.iterdir()) == []  # no run folder, nothing read or written


def test_printed_config_round_trips_through_config(recon, tmp_path):
    printed = tmp_path / "voxel.yaml"
    code, out, _ = recon("train", "voxel", "--print-config")
    printed.write_text(out)
    from recon.pipelines.common.settings import resolve_config
    from recon.pipelines.common.tasks import load_task

    spec = load_task("voxel")
    assert resolve_config(spec, printed, {}) == spec.config()


def test_train_help_mentions_print_config(recon):
    code, out, _ = recon("train", "--help")
    assert code == 0 and "--print-config" in out


def test_corset_image_size_is_read_as_size_with_one_notice(tmp_path, capsys):
    import torch

    from recon.pipelines.common.settings import config_dict, resolve_config, resume_config
    from recon.pipelines.common.tasks import load_task

    spec = load_task("corset")
    assert "image_size" not in config_dict(spec.config())
    cfg = resolve_config(spec, None, {"image_size": 128}, {"image_size": "--set image_size"})
    assert cfg.size == 128
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "warning: --set image_size is deprecated and goes away in the next release; use size"
    ]
    config = tmp_path / "c.yaml"
    config.write_text("image_size: 192\n")
    assert resolve_config(spec, config, {}).size == 192
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    with pytest.raises(Exception, match=r"--set image_size \(now size\) must be in"):
        resolve_config(spec, None, {"image_size": 1}, {"image_size": "--set image_size"})
    config.write_text("image_size: 3\n")
    with pytest.raises(Exception, match=r"c\.yaml: setting image_size \(now size\) must be in"):
        resolve_config(spec, config, {})
    capsys.readouterr()

    old = config_dict(spec.config())
    old["image_size"] = old.pop("size")
    old.update(image_size=128, data=str(tmp_path))
    checkpoint = tmp_path / "last.ckpt"
    torch.save(
        {
            "state_dict": {},
            "hyper_parameters": {"task": "corset", "config": old},
            "optimizer_states": [],
            "loops": {},
            "epoch": 3,
        },
        checkpoint,
    )
    resumed = resume_config(spec, checkpoint, None, {"epochs": 300})
    assert (resumed.size, resumed.epochs) == (128, 300)
    assert "image_size is deprecated" in capsys.readouterr().err
    with pytest.raises(Exception, match="size"):
        resume_config(spec, checkpoint, None, {"size": 256})


# (config file, --set pairs, the message): corset's `size` was `image_size`; both names with
# different values were resolved silently, the new name winning
RENAMED_TWICE = [
    ("size: 64\nimage_size: 128\n", [], "{config}: size 64 and image_size 128 (its old name) "
     "disagree: give size only"),
    (None, ["size=64", "image_size=128"], "--set size=64 and --set image_size=128 (its old name) "
     "disagree: give size only"),
    ("size: 64\n", ["image_size=128"], "size 64 (in {config}) and image_size 128 (its old name, "
     "from --set) disagree: give size only"),
    ("image_size: 128\n", ["size=64"], "size 64 (from --set) and image_size 128 (its old name, in "
     "{config}) disagree: give size only (rename image_size to size in the file)"),
    ("size: 128\nimage_size: 128\n", ["image_size=64"], "size 128 (in {config}) and image_size 64 "
     "(its old name, from --set) disagree: give size only"),
    ("size: 128\nimage_size: 128\n", ["size=64"], "size 64 (from --set) and image_size 128 (its "
     "old name, in {config}) disagree: give size only (remove image_size from the file)"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "pairs", "message"), RENAMED_TWICE, ids=["config", "set", "config-new", "set-new",
                                                      "config-both", "config-both-set-new"]
)  # fmt: skip
def test_corset_size_and_image_size_that_disagree_are_refused(
    recon, tmp_path, text, pairs, message
):
    config = tmp_path / "c.yaml"
    flags = []
    if text is not None:
        config.write_text(text)
        flags = ["--config", config]
    for pair in pairs:
        flags += ["--set", pair]
    out = tmp_path / "run"
    code, stdout, err = recon("train", "corset", "-o", out, "--device", "cpu", "-q", *flags)
    assert code == 2, err
    assert err.strip().splitlines() == [f"error: {message.format(config=config)}"], err
    assert stdout == "" and not out.exists()
    code, stdout, err = recon("train", "corset", "--print-config", *flags)  # the same check
    assert code == 2 and message.format(config=config) in err and stdout == "", err


def test_corset_size_and_image_size_that_agree_pass_and_set_overrides_the_same_name(
    tmp_path, capsys
):
    """The same value under both names is read with the usual notice; a --set of the name the
    config file uses overrides the file, as for any setting (the names must still agree)."""
    from recon.pipelines.common.settings import resolve_config
    from recon.pipelines.common.tasks import load_task

    spec = load_task("corset")
    config = tmp_path / "c.yaml"
    config.write_text("size: 128\nimage_size: 128\n")
    assert resolve_config(spec, config, {}).size == 128
    assert capsys.readouterr().err == (
        f"warning: {config}: setting image_size is deprecated and goes away in the next "
        "release; use size\n"
    )
    labels = {"size": "--set size", "image_size": "--set image_size"}
    assert resolve_config(spec, None, {"size": 192, "image_size": 192}, labels).size == 192
    assert resolve_config(spec, config, {"size": 192, "image_size": 192}, labels).size == 192
    config.write_text("image_size: 128\n")
    assert resolve_config(spec, config, {"image_size": 192}, labels).size == 192
    assert resolve_config(spec, config, {"size": 128}, labels).size == 128
    config.write_text("size: 128\n")
    assert resolve_config(spec, config, {"image_size": 128}, labels).size == 128
    capsys.readouterr()


def test_renamed_setting_notice_comes_only_when_the_settings_pass(recon, tmp_path):
    """Bad input is its one line: the deprecation notice of image_size is not written first."""
    config = tmp_path / "c.yaml"
    config.write_text("image_size: 128\nepochs: 0\n")
    code, _, err = recon("train", "corset", "--config", config, "-o", tmp_path / "run", "-q")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{config}: setting epochs must be in [1, 100000], not 0" in err


@pytest.mark.parametrize("text", ["task:\nepochs: 1\n", "task: ''\nepochs: 1\n"])
def test_config_file_that_records_no_task_is_worded_for_the_user(recon, tmp_path, text):
    """A config file whose task: is empty read "settings of task None, not 'voxel'"."""
    config = tmp_path / "c.yaml"
    config.write_text(text)
    code, _, err = recon("train", "voxel", "--config", config, "-o", tmp_path / "run", "-q")
    assert code == 2, err
    assert err.strip().splitlines() == [
        f"error: {config}: not settings of task 'voxel' (it records no task)"
    ], err
    assert not (tmp_path / "run").exists()


def test_config_numbers_read_as_yaml_1_2_reads_them(recon, tmp_path):
    """010 trained 8 epochs (YAML 1.1's octal) and 1e-3 was text; a file and --set agree."""
    import yaml

    (tmp_path / "c.yaml").write_text("epochs: 010\nhidden: 0x10\nlr: 1e-3\n")
    code, out, err = recon("train", "voxel", "--print-config", "--config", tmp_path / "c.yaml",
                           "--set", "batch_size=012")  # fmt: skip
    assert code == 0, err
    printed = yaml.safe_load(out)
    assert (printed["epochs"], printed["hidden"], printed["lr"]) == (10, 16, 0.001)
    assert printed["batch_size"] == 12


def test_config_booleans_read_as_yaml_1_2_reads_them(recon, tmp_path):
    """YAML 1.1 read yes/no/on/off as booleans: `--set source=off` became False, and
    `jitter: no` passed for false; only true and false are booleans now."""
    import yaml

    code, out, err = recon("train", "drr", "--print-config", "--set", "source=off")
    assert code == 0, err
    assert yaml.safe_load(out)["source"] == "off"
    (tmp_path / "c.yaml").write_text("jitter: no\n")
    for args, label in [
        (["--set", "jitter=off"], "--set jitter"),
        (["--config", tmp_path / "c.yaml"], "c.yaml: setting jitter"),
    ]:
        code, out, err = recon("train", "drr", "--print-config", *args)
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
        assert label in err and "takes true or false, not" in err, err
    code, out, err = recon("train", "drr", "--print-config", "--set", "jitter=False")
    assert code == 0 and yaml.safe_load(out)["jitter"] is False, err


def test_config_that_is_a_folder_says_so(recon, tmp_path):
    code, _, err = recon("train", "voxel", "--config", tmp_path, "-o", tmp_path / "run")
    assert code == 2 and err == f"error: {tmp_path}: is a folder, not a config file\n", err
    assert not (tmp_path / "run").exists()


def test_print_config_applies_and_checks_set_and_config(recon, tmp_path):
    """`--print-config --set nosuch=1` printed the defaults with exit 0, the typo unsaid; it now
    prints the settings as --config and --set make them, checked as a run checks them."""
    import yaml

    code, out, err = recon("train", "skull", "--print-config", "--set", "nosuch=1")
    assert code == 2 and "task skull has no setting nosuch" in err and out == "", err
    (tmp_path / "c.yaml").write_text("epochs: 7\n")
    code, out, err = recon("train", "skull", "--print-config", "--config", tmp_path / "c.yaml",
                           "--set", "lr=0.01")  # fmt: skip
    assert code == 0, err
    printed = yaml.safe_load(out)
    assert printed["lr"] == 0.01 and printed["epochs"] == 7 and printed["resolution"] == 0
    code, out, _ = recon("train", "skull", "--print-config", "--json", "--set", "lr=0.01")
    (lr,) = [s for s in json.loads(out)["settings"] if s["name"] == "lr"]
    assert lr["value"] == 0.01 and lr["default"] == 0.0005


def test_print_config_applies_and_checks_the_flags(recon, tmp_path):
    """--print-config showed `data: null` and `epochs: 30` for `--data D --epochs 5`, and
    printed `--epochs 0 --lr inf` with exit 0, where a run refuses them."""
    import yaml

    code, out, err = recon("train", "voxel", "--data", tmp_path, "--epochs", 5, "--print-config")
    assert code == 0, err
    printed = yaml.safe_load(out)
    assert printed["data"] == str(tmp_path) and printed["epochs"] == 5
    code, out, err = recon("train", "voxel", "--epochs", 0, "--print-config")
    assert code == 2 and "--epochs must be in [1, 100000], not 0" in err and out == "", err


def test_an_unknown_setting_names_where_it_was_given(recon, tmp_path):
    """An unknown key in a --config file was refused without naming the file."""
    (tmp_path / "unk.yaml").write_text("nosuch: 1\n")
    code, _, err = recon("train", "skull", "--config", tmp_path / "unk.yaml", "--print-config")
    assert code == 2 and f"(given as {tmp_path / 'unk.yaml'}: setting nosuch;" in err, err
    code, _, err = recon("train", "skull", "--set", "widht=3", "--print-config")
    assert code == 2 and "(given as --set widht;" in err, err


def test_the_strategy_choices_offer_none_that_is_refused(recon):
    """The choices listed for a misspelt --strategy included ddp_spawn, which is refused."""
    code, _, err = recon("train", "voxel", "--strategy", "nonsense", "--data", "x")
    assert code == 2 and "choices: auto, ddp," in err and "ddp_spawn" not in err, err


def test_train_voxel_names_a_missing_data_root_as_a_root(recon, tmp_path):
    """--data NOSUCH read "NOSUCH/pix3d.json: no such file", as if only the index were missing;
    check-data names the root, and now train does too."""
    code, _, err = recon("train", "voxel", "--data", tmp_path / "nosuch", "--device", "cpu")
    assert code == 2 and err.strip() == (
        f"error: {tmp_path / 'nosuch'}: no such data set root (a Pix3D root holds pix3d.json)"
    )


# (task, the --set pair, what a run says of it): settings that only the task's own check
# refused were printed by --print-config with exit 0
SETTINGS_A_RUN_REFUSES = [
    ("drr", "size=100", "setting size: U-Net size must be a power of two >= 32, not 100"),
    ("drr", "source=a(", "setting source: not a regular expression (missing ),"),
    # inside its stated range 1-8, but 7 layers leave a 256 px image no patch: exit 1 in the
    # first step ("Expected more than 1 value per channel")
    ("drr", "patch_layers=7", "setting patch_layers 7: a 256 px image leaves the discriminator"),
    ("parts", "resolution=12", "setting resolution must be a power of two >= 8, not 12"),
    ("voxel", "val_fraction=1", "--set val_fraction must be in (0, 1), not 1"),
    # pose renders its poses: val_fraction was taken, hidden from --print-config, and unused
    ("pose", "val_fraction=0.3", "task pose splits no data set, so it takes no setting"),
]


@pytest.mark.parametrize(
    ("task", "pair", "message"),
    SETTINGS_A_RUN_REFUSES,
    ids=[f"{task} {pair}" for task, pair, _ in SETTINGS_A_RUN_REFUSES],
)
def test_print_config_refuses_what_the_task_check_refuses(recon, tmp_path, task, pair, message):
    code, stdout, err = recon("train", task, "--print-config", "--set", pair)
    assert code == 2 and stdout == "", err
    (line,) = err.strip().splitlines()
    assert line.startswith("error: ") and message in line, err
    out = tmp_path / "run"
    code, _, run_err = recon("train", task, "--set", pair, "-o", out, "--device", "cpu", "-q")
    assert (code, run_err) == (2, err) and not out.exists()  # a run says the same


def test_print_config_prints_a_setting_the_task_check_accepts(recon):
    import yaml

    code, out, err = recon("train", "drr", "--print-config", "--set", "size=128")
    assert code == 0 and err == "", err
    assert yaml.safe_load(out)["size"] == 128


def test_paths_in_settings_are_saved_absolute(tmp_path, monkeypatch):
    """`train pose -v ct.nii.gz` saved `volume: ct.nii.gz` as typed, so `--resume` from another
    folder said "ct.nii.gz: no such CT file"; the data root was made absolute, the rest not."""
    from recon.pipelines.common.settings import resolve_config
    from recon.pipelines.common.tasks import load_task

    monkeypatch.chdir(tmp_path)
    cfg = resolve_config(load_task("pose"), None, {"volume": "ct.nii.gz", "finetune": "a.ckpt"})
    assert (cfg.volume, cfg.finetune) == (str(tmp_path / "ct.nii.gz"), str(tmp_path / "a.ckpt"))
    cfg = resolve_config(load_task("voxel"), None, {"data": "d", "pretrained_weights": "w.pt"})
    assert (cfg.data, cfg.pretrained_weights) == (str(tmp_path / "d"), str(tmp_path / "w.pt"))
    assert resolve_config(load_task("voxel"), None, {}).pretrained_weights == ""  # none: kept
