"""`recon register` and `recon synth xray` inputs: output names (UID-named DICOMs, same names in
two folders), renamed options, and numbers out of range (one line on stderr, exit 2, nothing
written)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recon.pipelines.common.errors import BadInput
from recon.pipelines.common.inputs import xray_name
from recon.pipelines.xray.register_inputs import expand_inputs, output_names

UIDS = ("1.2.840.113619.2.55.3.1", "1.2.840.113619.2.55.3.2")
# fast settings: the tests are about inputs and names, not accuracy
FAST = ["--ct-spacing", 8, "--heights", 16, "--iterations", 2, "--patience", 1, "--threads", 1,
        "--min-similarity", -1, "--mirror-check-below", 0, "--device", "cpu"]  # fmt: skip


def write_dicom(path: Path, seed: int = 0, **tags) -> Path:
    """A small DX DICOM written with pydicom alone: a smooth blob pattern, 12-bit counts, the
    geometry tags `register` needs, and any extra tags given."""
    from dicom_files import write_dx

    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:40, 0:36]
    image = np.zeros((40, 36))
    for _ in range(4):
        r, c, s = rng.uniform(5, 35), rng.uniform(5, 31), rng.uniform(3, 8)
        image += np.exp(-((rows - r) ** 2 + (cols - c) ** 2) / (2 * s * s))
    counts = np.round(image / image.max() * 4000).astype(np.uint16)
    geometry = {
        "DistanceSourceToDetector": "1000",
        "ImagerPixelSpacing": ["8.0", "8.0"],
        "DistanceSourceToPatient": "850",
        "PositionerPrimaryAngle": "0",
        "PositionerSecondaryAngle": "0",
        "PatientOrientation": ["L", "F"],
    }
    return write_dx(path, counts, bits_stored=12, **{**geometry, **tags})


def test_output_names_keep_uid_dots_and_tell_folders_apart(tmp_path):
    assert xray_name(Path("1.2.840.113619.2.1.dcm")) == "1.2.840.113619.2.1"
    assert xray_name(Path("a/chest.DICOM")) == "chest"
    assert xray_name(Path("x.ray.png")) == "x.ray"
    assert xray_name(Path("scan.tiff")) == "scan"
    assert xray_name(Path("1.2.840.113619.2.1")) == "1.2.840.113619.2.1"  # no known suffix
    assert xray_name(Path("..dcm")) == "..dcm"  # never "." as a folder
    names = output_names([Path("p/1.2.3.dcm"), Path("p/1.2.4.dcm"), Path("p/1.2.dcm")])
    assert names == ["1.2.3", "1.2.4", "1.2"]
    assert output_names([Path("a/x.dcm"), Path("b/x.dcm"), Path("b/y.png")]) == [
        "a_x",
        "b_x",
        "b_y",
    ]
    # the same name in one folder: FOLDER_NAME_SUFFIX; still the same: NNN_NAME
    assert output_names([Path("a/x.dcm"), Path("b/x.png"), Path("a/x.png")]) == [
        "a_x_dcm",
        "b_x_png",
        "a_x_png",
    ]
    assert output_names([Path("s/x.dcm"), Path("t/s/x.dcm")]) == ["000_x", "001_x"]
    # a file without a suffix (a DICOM named by UID) gets no trailing "_" nor its UID's tail
    assert output_names([Path("a/1.2.3"), Path("a/1.2.3.dcm"), Path("b/1.2.3.png")]) == [
        "a_1.2.3",
        "a_1.2.3_dcm",
        "b_1.2.3_png",
    ]
    with pytest.raises(BadInput, match="reserved"):
        output_names([Path("results.json.dcm")])
    # a folder holding DICOMs named by UID without a suffix: found by their preamble
    folder = tmp_path / "uids"
    write_dicom(folder / UIDS[0])
    write_dicom(folder / f"{UIDS[1]}.dcm")
    (folder / "notes.txt").write_text("not an X-ray")
    (folder / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM")
    files, folders = expand_inputs([folder])
    assert [f.name for f in files] == [UIDS[0], f"{UIDS[1]}.dcm"] and folders == [folder]
    assert output_names(files) == list(UIDS)
    with pytest.raises(BadInput, match="given twice"):
        expand_inputs([folder, folder / f"{UIDS[1]}.dcm"])


@pytest.mark.slow
def test_uid_named_dicoms_register_to_separate_folders(tmp_path, recon, monkeypatch):
    """Two DICOMs named by UID (written by pydicom, not by `recon synth`) used to share the
    output name `1` and be refused; each now gets its own folder, figure and pose row."""
    from test_xray_io import small_ct

    ct = small_ct(tmp_path / "ct.nii.gz")
    folder = tmp_path / "study"
    for seed, uid in enumerate(UIDS):
        write_dicom(folder / f"{uid}.dcm", seed)
    out = tmp_path / "reg"
    code, stdout, err = recon("register", folder, "-v", ct, "-o", out, *FAST, "--json")
    assert code == 0, err
    rows = json.loads(stdout)["results"]
    assert [row["name"] for row in rows] == list(UIDS)
    for row, uid in zip(rows, UIDS, strict=True):
        assert Path(row["overlay"]) == out / uid / "overlay.png"
        assert (out / uid / "parameters.pt").is_file() and (out / uid / "overlay.png").is_file()
        assert len(row["rot_deg"]) == 3 and len(row["xyz_mm"]) == 3
        assert abs(row["xyz_mm"][1] - 850) < 100  # started at the DICOM's 850 mm
    # the table names both X-rays and shows the found pose
    monkeypatch.setenv("COLUMNS", "160")
    code, stdout, err = recon("register", folder, "-v", ct, "-o", tmp_path / "again", *FAST)
    assert code == 0, err
    assert all(uid in stdout for uid in UIDS) and "rot ZXY deg" in stdout
    found = rows[0]["rot_deg"]
    assert " ".join(f"{v:.2f}" for v in found) in stdout


@pytest.mark.slow
def test_plateau_threshold_decides_when_a_stage_stops(tmp_path, recon):
    """--plateau-threshold reaches the optimiser: the coarsest threshold counts next to no step
    as progress, so the rates drop and the stage stops early; a fine one goes on."""
    import torch
    from test_xray_io import small_ct

    ct = small_ct(tmp_path / "ct.nii.gz")
    dicom = write_dicom(tmp_path / "x.dcm", 5)
    fast = [*FAST, "--iterations", 200, "--patience", 4, "--json"]
    counts = {}
    for threshold in (0.01, 1e-7):
        out = tmp_path / f"reg_{threshold}"
        args = ("register", dicom, "-v", ct, "-o", out, *fast, "--plateau-threshold", threshold)
        code, stdout, err = recon(*args)
        assert code == 0, err
        counts[threshold] = json.loads(stdout)["results"][0]["iterations"]
        saved = torch.load(out / "x" / "parameters.pt", weights_only=True)
        assert saved["config"]["threshold"] == threshold
    assert counts[0.01] + 50 < counts[1e-7], counts  # measured 84 and 200


def _png(path: Path) -> Path:
    from recon.pipelines.common.io import write_png

    write_png(path, (np.arange(32 * 32).reshape(32, 32) % 200).astype(np.uint8))
    return path


PNG = ["--init", "fixed", "--sdd", 1000, "--pixel-spacing", 1, 1]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--rot", "nan", 0, 0], "--rot must be in [-360, 360], not nan"),
        (["--rot", 0, 400, 0], "--rot must be in [-360, 360], not 400"),
        (["--xyz", 0, "inf", 0], "--xyz must be in [-10000, 10000], not inf"),
        (["--sdd", 0], "--sdd must be in (0, 10000], not 0"),
        (["--sdd", "nan"], "--sdd must be in (0, 10000], not nan"),
        (["--pixel-spacing", 0, 1], "--pixel-spacing must be in (0, 50], not 0"),
        (["--pixel-spacing", 1, "nan"], "--pixel-spacing must be in (0, 50], not nan"),
        (["--lr-rot", 0], "--lr-rot must be in (0, 1], not 0"),
        (["--lr-rot", "nan"], "--lr-rot must be in (0, 1], not nan"),
        (["--lr-xyz", -1], "--lr-xyz must be in (0, 1000], not -1"),
        (["--threads", -1], "--threads must be in [0, 1024], not -1"),
        (["--crop", -2], "--crop must be in [0, 4096], not -2"),
        (["--ct-spacing", 0], "--ct-spacing must be in [0.1, 50], not 0"),
        (["--min-similarity", "nan"], "--min-similarity must be in [-1, 1], not nan"),
        (["--mirror-check-below", 1.5], "--mirror-check-below must be in [0, 1], not 1.5"),
        (["--heights", 0], "--heights must be 1 to 8 comma-separated integers in [11, 4096]"),
        (["--heights", "64,abc"], "--heights must be 1 to 8"),
        (["--heights", 8], "--heights must be 1 to 8"),  # no 11 px similarity window: it crashed
        (["--heights", "64,,128"], "--heights must be 1 to 8"),
        # 32 px less 22: a 10 x 10 px X-ray holds no 11 px window (it crashed in the similarity)
        (["--crop", 22], "its 10 x 10 px stage (of 10 x 10 px registered) is narrower than"),
        (["--heights", 99999], "--heights must be 1 to 8"),
        (["--iterations", 0], "--iterations must be 1 to 8 comma-separated integers in [1,"),
        (["--patience", "-3"], "--patience must be 1 to 8"),
        (["--plateau-threshold", 0], "--plateau-threshold must be in (0, 0.01], not 0"),
        (["--plateau-threshold", "nan"], "--plateau-threshold must be in (0, 0.01], not nan"),
        (["--plateau-threshold", 0.5], "--plateau-threshold must be in (0, 0.01], not 0.5"),
        (["--seed", -1], "--seed must be in [0, 4294967295], not -1"),
    ],
)
def test_register_numbers_out_of_range(tmp_path, recon, args, message):
    out = tmp_path / "reg"
    code, _, err = recon("register", _png(tmp_path / "x.png"), "-o", out, *PNG, *args)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err
    assert not out.exists()


@pytest.mark.parametrize(
    "init, args, flag, wanted",
    [
        ("dicom", ["--rot", 5, 0, 0], "--rot", "fixed"),
        ("dicom", ["--xyz", 0, 800, 0], "--xyz", "fixed"),
        ("fixed", ["--checkpoint", "pose.ckpt"], "--checkpoint", "model"),
        ("dicom", ["--from", "reg"], "--from", "restart"),
        ("model", ["--checkpoint", "pose.ckpt", "--rot", 5, 0, 0], "--rot", "fixed"),
    ],
)
def test_a_start_input_of_another_init_is_refused(tmp_path, recon, init, args, flag, wanted):
    """`--rot 5 0 0` (or --checkpoint, or --from) without the --init that reads it was ignored:
    the run started from the DICOM angles and exited 0, the start the user gave unused."""
    out = tmp_path / "reg"
    xray = _png(tmp_path / "x.png")
    code, _, err = recon("register", xray, "-o", out, *PNG[2:], "--init", init, *args)
    assert code == 2, err
    assert err == (
        f"error: {flag} is read with --init {wanted} only, and this run starts from --init "
        f"{init}: add --init {wanted}, or leave {flag} out\n"
    )
    assert not out.exists()


def test_a_stage_narrower_than_the_similarity_window_is_refused(tmp_path, recon):
    """A tall, narrow X-ray: 128 x 16 px at the 64 px stage is 64 x 8 px, too narrow for the
    11 px window (it crashed with a RuntimeError from the pooling, exit 1, after loading the
    CT)."""
    from recon.pipelines.common.io import write_png

    png, out = tmp_path / "narrow.png", tmp_path / "reg"
    write_png(png, (np.arange(128 * 16).reshape(128, 16) % 200).astype(np.uint8))
    code, _, err = recon("register", png, "-o", out, *PNG, "--heights", 64, "--iterations", 2,
                         "--patience", 1)  # fmt: skip
    assert code == 2 and err.count("\n") == 1, err
    assert "its 64 x 8 px stage (of 128 x 16 px registered) is narrower than" in err
    assert not out.exists()


def _stop_at_the_ct(monkeypatch) -> None:
    """Loading the CT ends the run with one line (the checks before it passed)."""
    import recon.pipelines.xray.volume as volume

    def reached(*args, **kwargs):
        raise BadInput("the CT was reached")

    monkeypatch.setattr(volume, "load_ct", reached)


def test_the_window_advice_names_the_change_that_fixes_it(tmp_path, recon, monkeypatch):
    """The stage check advised "raise --heights or lower --crop" whatever the cause. A crop
    that leaves fewer than 11 px across cannot be helped by --heights (the stages stop at the
    registered size): the message now names the largest --crop that works; a coarse stage of a
    narrow X-ray names the --heights value that works. Following the advice passes the check,
    one step less does not."""
    from recon.pipelines.common.io import write_png

    _stop_at_the_ct(monkeypatch)
    xray, out = write_dicom(tmp_path / "x.dcm"), tmp_path / "reg"  # 40 x 36 px
    code, _, err = recon("register", xray, "-o", out, *FAST, "--crop", 28)
    assert code == 2 and err.count("\n") == 1, err
    assert "its 12 x 8 px stage (of 12 x 8 px registered) is narrower than" in err
    assert err.rstrip().endswith("window; lower --crop to 25 or less"), err
    for crop, passes in ((25, True), (26, False), (0, True)):
        code, _, err = recon("register", xray, "-o", out, *FAST, "--crop", crop)
        assert code == 2 and ("the CT was reached" in err) == passes, (crop, err)
    png = tmp_path / "narrow.png"
    write_png(png, (np.arange(128 * 16).reshape(128, 16) % 200).astype(np.uint8))
    stages = ["--iterations", 2, "--patience", 1]
    code, _, err = recon("register", png, "-o", out, *PNG, *stages, "--heights", 64)
    assert err.rstrip().endswith("window; raise --heights 64 to at least 85"), err
    for height, passes in ((85, True), (84, False)):
        code, _, err = recon("register", png, "-o", out, *PNG, *stages, "--heights", height)
        assert code == 2 and ("the CT was reached" in err) == passes, (height, err)
    assert not out.exists()


def test_window_advice_when_crop_and_heights_both_fall_short():
    from recon.pipelines.xray.drr import Intrinsics
    from recon.pipelines.xray.registration_run import detector_advice

    def advice(rows, columns, crop, heights):
        registered = Intrinsics(1000.0, rows - crop, columns - crop, 1.0, 1.0)
        return detector_advice(registered, (rows, columns), crop, heights, heights[0])

    assert advice(64, 20, 15, [16]) == (
        "lower --crop to 9 or less and raise --heights 16 to at least 53"
    )
    assert advice(64, 20, 15, [53]) == "lower --crop to 9 or less"
    assert advice(10, 40, 0, [11]) == "the X-ray itself (10 x 40 px) is too small to register"


def _bad_positioner(tmp_path):
    import warnings

    with warnings.catch_warnings():  # pydicom warns that it writes the bad value asked for
        warnings.simplefilter("ignore", UserWarning)
        path = write_dicom(tmp_path / "p.dcm", PositionerPrimaryAngle="nan")
    return [path], "positioner"


def _wild_positioner(tmp_path):
    return [write_dicom(tmp_path / "p.dcm", PositionerSecondaryAngle="1000")], "within +-360"


def _given_twice(tmp_path):
    a = write_dicom(tmp_path / "one" / "im.dcm")
    return [a, tmp_path / "one"], "given twice"


def _reserved_name(tmp_path):
    return [write_dicom(tmp_path / "run.json.dcm")], "reserved"


def _output_holds_the_xray(tmp_path):
    """-o the X-ray's own folder with --overwrite deleted the X-ray (exit 0)."""
    xray = write_dicom(tmp_path / "reg" / "a.dcm")
    return [xray, "--overwrite"], "output would replace the input"


def _output_inside_the_input_folder(tmp_path):
    write_dicom(tmp_path / "a.dcm")
    return [tmp_path], "inside, the input folder"


def _output_holds_a_link_to_the_xray(tmp_path):
    """The X-ray given as a link inside -o: the link was deleted."""
    film = write_dicom(tmp_path / "data" / "a.dcm")
    link = tmp_path / "reg" / "link.dcm"
    link.parent.mkdir()
    link.symlink_to(film)
    return [link, "--overwrite"], "output would replace the input"


def _output_holds_the_mask(tmp_path):
    xray = write_dicom(tmp_path / "x.dcm")
    mask = tmp_path / "reg" / "mask.png"
    mask.parent.mkdir()
    mask.write_bytes(b"")
    return [xray, "--mask", mask, "--overwrite"], "output would replace the input"


def _output_is_the_run_restarted_from(tmp_path):
    """--init restart --from OUT -o OUT --overwrite replaced the run it was reading."""
    xray = write_dicom(tmp_path / "x.dcm")
    (tmp_path / "reg" / "x").mkdir(parents=True)
    (tmp_path / "reg" / "x" / "parameters.pt").write_bytes(b"")
    args = ["--init", "restart", "--from", tmp_path / "reg", "--overwrite"]
    return [xray, *args], "output would replace the input"


@pytest.mark.parametrize(
    "case",
    [
        _output_is_the_run_restarted_from,
        _bad_positioner,
        _wild_positioner,
        _given_twice,
        _reserved_name,
        _output_holds_the_xray,
        _output_inside_the_input_folder,
        _output_holds_a_link_to_the_xray,
        _output_holds_the_mask,
    ],
)
def test_register_bad_files(tmp_path, recon, case):
    from test_bad_input import snapshot

    args, message = case(tmp_path)
    out = tmp_path / "reg"
    before = snapshot(tmp_path)
    code, _, err = recon("register", *args, "-o", out, "--device", "cpu")
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message.lower() in lines[0].lower(), err
    assert snapshot(tmp_path) == before  # nothing written, nothing deleted


def test_png_names_the_new_spacing_flag_and_the_old_one_still_works(tmp_path, recon):
    png, out = _png(tmp_path / "x.png"), tmp_path / "reg"
    code, _, err = recon("register", png, "-o", out, "--sdd", 1000)
    assert code == 2 and err.count("\n") == 1 and "pass --pixel-spacing" in err, err
    code, _, err = recon("register", png, "-o", out, "--sdd", 1000, "--spacing", 0, 1)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 2, err
    assert "--spacing is deprecated" in lines[0] and "use --pixel-spacing" in lines[0]
    assert "--spacing must be in (0, 50], not 0" in lines[1]  # the spelling typed
    assert not out.exists()


def test_pixel_spacing_and_its_old_name_with_other_values_are_refused(tmp_path, recon):
    """--pixel-spacing 1 1 --spacing 2 2 took the old spelling's value without a word."""
    png, out = _png(tmp_path / "x.png"), tmp_path / "reg"
    code, _, err = recon("register", png, "-o", out, "--sdd", 1000, "--pixel-spacing", 1, 1,
                         "--spacing", 2, 2)  # fmt: skip
    assert code == 2 and err.count("\n") == 1, err
    assert err == (
        "error: --pixel-spacing 1 1 and --spacing 2 2 (its old name) disagree: give "
        "--pixel-spacing only\n"
    )
    assert not out.exists()


@pytest.mark.parametrize(
    "option, value",
    [
        ("--init", "guess"),
        ("--renderer", "raytrace"),
        ("--linearize", "yes"),
        ("--orientation", "LR"),
    ],  # fmt: skip
)
def test_register_choices_are_enforced(tmp_path, recon, option, value):
    out = tmp_path / "reg"
    code, _, err = recon("register", _png(tmp_path / "x.png"), "-o", out, *PNG, option, value)
    assert code == 2 and value in err
    assert not out.exists()


def test_register_help_lists_choices_and_space_separated_metavars(recon):
    code, text, _ = recon("register", "--help")
    assert code == 0
    for shown in ("<dicom|fixed|model|restart>", "<trilinear|siddon>", "<auto|on|off>",
                  "<AP|PA>", "RZ RX RY", "X Y Z", "--pixel-spacing", "ROW COL"):  # fmt: skip
        assert shown in text, shown
    assert "FLOAT FLOAT" not in text and "--spacing " not in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["--count", 0], "--count must be in [1, 10000], not 0"),
        (["-n", 20000], "--count must be in [1, 10000], not 20000"),
        (["--size", 4], "--size must be in [8, 4096], not 4"),
        (["--sdd", "nan"], "--sdd must be in (0, 10000], not nan"),
        (["--field", 0], "--field must be in (0, 5000], not 0"),
        (["--rot-range", -1], "--rot-range must be in [0, 180], not -1"),
        (["--rot-range", "nan"], "--rot-range must be in [0, 180], not nan"),
        (["--xyz-range", "inf"], "--xyz-range must be in [0, 800], not inf"),
        # the source sits 850 mm from the CT's centre: 1000 drew poses with the CT behind it
        (["--xyz-range", "900"], "--xyz-range must be in [0, 800], not 900"),
        # the detector no farther than the CT's centre: the X-rays showed its near half only
        (["--sdd", 600], "--sdd 600 mm puts the detector no farther from the source than the CT"),
        (
            ["--xyz-range", 200],
            "drawn put up to 1087 mm from it (the nominal 850 mm, --xyz-range 200",
        ),
        (["--xyz-range", 200], "give --sdd above 1087, or --xyz-range at most 148.2"),
        (["--seed", -5], "--seed must be in [0, 4294967295], not -5"),
    ],
)
def test_synth_xray_numbers_out_of_range(tmp_path, recon, args, message):
    out = tmp_path / "xrays"
    code, _, err = recon("synth", "xray", "-o", out, *args)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err
    assert not out.exists()


def test_synth_xray_old_height_flag_warns_and_is_checked(tmp_path, recon):
    out = tmp_path / "xrays"
    code, _, err = recon("synth", "xray", "-o", out, "--height", 4)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 2, err
    assert "--height is deprecated" in lines[0] and "use --size" in lines[0]
    assert "--height must be in [8, 4096], not 4" in lines[1]
    assert not out.exists()
    code, text, _ = recon("synth", "xray", "--help")
    assert "--size" in text and "--height" not in text


def test_dicom_start_pose_refuses_non_finite_positioner_values():
    from types import SimpleNamespace

    from recon.pipelines.xray.register_inputs import dicom_pose

    nan = float("nan")
    for positioner, message in (
        ((nan, 0.0, 850.0), "must be finite and within"),
        ((0.0, 720.0, 850.0), "must be finite and within"),
        ((0.0, 0.0, float("inf")), "source-to-patient distance"),
        ((0.0, 0.0, -5.0), "source-to-patient distance"),
    ):
        xray = SimpleNamespace(path=Path("x.dcm"), positioner=positioner)
        with pytest.raises(BadInput, match=message):
            dicom_pose(xray, "AP")
    assert dicom_pose(SimpleNamespace(path="x", positioner=(0.0, 0.0, 850.0)), "AP").shape == (
        1,
        4,
        4,
    )


def test_truth_of_an_unfinished_sharded_set_is_named(tmp_path, recon):
    """`register --truth` on an X-ray set whose shards have not all run: one line saying that
    truth.json is not written yet, exit 2, nothing written."""
    xrays = tmp_path / "xrays"
    code, _, err = recon("synth", "xray", "-o", xrays, "-n", 3, "--size", 16, "--shard", "1/3")
    assert code == 0, err
    assert not (xrays / "truth.json").exists()
    out = tmp_path / "reg"
    code, _, err = recon("register", xrays, "-o", out, "--truth", xrays / "truth.json", *FAST)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "not written yet" in lines[0], err
    assert not out.exists()


def test_skip_done_keeps_only_rows_registered_the_same_way(tmp_path, recon):
    """--skip-done used to keep an X-ray registered with other settings (here another
    --ct-spacing and --init) and report it beside the new ones under the new settings."""
    from test_xray_io import small_ct

    ct = small_ct(tmp_path / "ct.nii.gz")
    folder = tmp_path / "films"
    write_dicom(folder / "a.dcm", 0)
    out = tmp_path / "reg"
    assert recon("register", folder / "a.dcm", "-v", ct, "-o", out, *FAST)[0] == 0
    write_dicom(folder / "b.dcm", 1)
    other = list(FAST)
    other[other.index("--ct-spacing") + 1] = 6
    code, stdout, err = recon("register", folder, "-v", ct, "-o", out, *other, "--skip-done",
                              "--init", "fixed")  # fmt: skip
    assert code == 2 and err.count("\n") == 1, err
    assert "made with other settings (--init fixed here, dicom in run.json; --ct-spacing" in err
    assert "; start (--rot/--xyz, --from or --checkpoint) " in err
    assert not (out / "b").exists()
    code, stdout, err = recon("register", folder, "-v", ct, "-o", out, *FAST, "--skip-done",
                              "--json")  # fmt: skip
    assert code == 0, err
    rows = json.loads(stdout)["results"]
    assert [row.get("from_earlier_run", False) for row in rows] == [True, False]


def test_skip_done_refuses_rows_read_or_started_another_way(tmp_path, recon):
    """The column direction, the detector, the image region, the start pose and the failure
    threshold shape a row as much as the optimiser does: --skip-done used to keep an X-ray
    registered with --no-reverse-x-axis beside new ones read the other way."""
    from test_xray_io import small_ct

    ct = small_ct(tmp_path / "ct.nii.gz")
    folder = tmp_path / "films"
    write_dicom(folder / "a.dcm", 0)
    out = tmp_path / "reg"
    first = ["register", folder / "a.dcm", "-v", ct, "-o", out, *FAST, "--init", "fixed"]
    assert recon(*first, "--no-reverse-x-axis")[0] == 0
    write_dicom(folder / "b.dcm", 1)
    again = ["register", folder, "-v", ct, "-o", out, *FAST, "--skip-done", "--init", "fixed"]
    for changed, flag in (
        ([], "--reverse-x-axis/--no-reverse-x-axis"),
        (["--no-reverse-x-axis", "--rot", 5, 0, 0], "start (--rot/--xyz, --from or --checkpoint)"),
        (["--no-reverse-x-axis", "--sdd", 900], "--sdd"),
        (["--no-reverse-x-axis", "--subtract-background"], "--subtract-background"),
    ):
        code, _, err = recon(*again, *changed)
        assert code == 2 and err.count("\n") == 1, err
        assert f"made with other settings ({flag} " in err and "in run.json)" in err
        assert not (out / "b").exists()
    code, _, err = recon(*again, "--no-reverse-x-axis")
    assert code == 0, err


def test_skip_done_compares_each_kept_row_and_loads_no_ct_when_nothing_is_left(
    tmp_path, recon, monkeypatch
):
    """A run stopped before its run record was written (a scheduler's time limit) left rows
    that --skip-done kept whatever the new settings; each row now keeps its own. A rerun with
    nothing left to register used to load the CT (seconds) all the same; and rows measured
    against another --truth were kept as if measured against the new one."""
    from test_xray_io import small_ct

    import recon.pipelines.xray.volume as volume

    ct = small_ct(tmp_path / "ct.nii.gz")
    xray, out = write_dicom(tmp_path / "a.dcm", 0), tmp_path / "reg"
    assert recon("register", xray, "-v", ct, "-o", out, *FAST)[0] == 0
    for record in ("run.json", "results.json"):  # as if stopped after its one X-ray
        (out / record).unlink()
    other = list(FAST)
    other[other.index("--ct-spacing") + 1] = 6
    code, _, err = recon("register", xray, "-v", ct, "-o", out, *other, "--skip-done")
    assert code == 2 and err.count("\n") == 1, err
    assert "a/result.json: it was made with other settings (--ct-spacing 6" in err, err
    assert not (out / "run.json").exists()

    def no_ct(*args, **kwargs):
        raise AssertionError("the CT was loaded with nothing to register")

    monkeypatch.setattr(volume, "load_ct", no_ct)
    code, stdout, err = recon("register", xray, "-v", ct, "-o", out, *FAST, "--skip-done",
                              "--json")  # fmt: skip
    assert code == 0, err
    assert json.loads(stdout)["results"][0]["from_earlier_run"] is True
    truth = tmp_path / "truth.npy"
    np.save(truth, np.eye(4)[None])
    code, _, err = recon("register", xray, "-v", ct, "-o", out, *FAST, "--skip-done",
                         "--truth", truth)  # fmt: skip
    assert code == 2 and "made with other settings (--truth " in err, err


@pytest.mark.parametrize(
    ("fiducials", "beside", "message"),
    [
        ("missing.json", False, "missing.json: no such fiducials file"),
        ("{", True, "fiducials.json: not a fiducials file (JSONDecodeError)"),
        (  # the braces closed twice: `...]}} in mm`
            '{"units": "mm"}',
            False,
            'f.json: not a fiducials file (KeyError); expected {"points": [[x, y, z], ...]} in mm',
        ),
        ('{"points": [[1, 2]]}', False, "f.json: fiducials must be a list of [x, y, z] points"),
    ],
)
def test_bad_fiducials_are_refused_before_the_ct_loads(
    tmp_path, recon, monkeypatch, fiducials, beside, message
):
    """A bad --fiducials file (or fiducials.json beside --truth) was found only after the CT
    had loaded (seconds); it is now refused first, with the same message."""
    import recon.pipelines.xray.volume as volume

    def no_ct(*args, **kwargs):
        raise AssertionError("the CT was loaded before the fiducials were read")

    monkeypatch.setattr(volume, "load_ct", no_ct)
    xray, out = write_dicom(tmp_path / "a.dcm", 0), tmp_path / "reg"
    truth = tmp_path / "truth.npy"
    np.save(truth, np.eye(4)[None])
    args = ["register", xray, "-o", out, "--truth", truth, *FAST]
    if fiducials == "missing.json":
        args += ["--fiducials", tmp_path / fiducials]
    elif beside:
        (tmp_path / "fiducials.json").write_text(fiducials)
    else:
        (tmp_path / "f.json").write_text(fiducials)
        args += ["--fiducials", tmp_path / "f.json"]
    code, _, err = recon(*args)
    assert code == 2 and err.count("\n") == 1, err
    assert message in err
    assert not out.exists()


def test_skip_done_exits_1_for_a_failed_registration_it_keeps(tmp_path, recon):
    """A resumed run's results cover every X-ray, so a failed one kept from the earlier run
    fails it too (it exited 0 while results.json counted the failure)."""
    from test_xray_io import small_ct

    ct = small_ct(tmp_path / "ct.nii.gz")
    xray, out = write_dicom(tmp_path / "a.dcm", 0), tmp_path / "reg"
    args = ["register", xray, "-v", ct, "-o", out, *FAST, "--min-similarity", 1]
    code, _, err = recon(*args)
    assert code == 1 and "ended below similarity 1" in err, err
    code, stdout, err = recon(*args, "--skip-done", "--json")
    assert code == 1 and "registration of a ended below similarity 1" in err, err
    document = json.loads(stdout)
    assert document["summary"]["failed"] == 1
    assert document["results"][0]["from_earlier_run"] is True


def _two_poses(path: Path) -> Path:
    """A pose file of two poses: the AP view, and the AP view turned 5 deg about Z."""
    import torch

    from recon.pipelines.xray.pose import pose_from_degrees

    poses = [pose_from_degrees([rz, 0.0, 0.0], [0.0, 850.0, 0.0]) for rz in (0.0, 5.0)]
    torch.save(torch.cat(poses), path)
    return path


def test_restart_from_a_pose_file_gives_each_xray_its_own_pose(tmp_path, recon):
    """--from a file of one pose per X-ray: each starts from its own (every X-ray started
    from the first pose); a file with another count is refused in one line."""
    import torch
    from test_xray_io import small_ct

    ct = small_ct(tmp_path / "ct.nii.gz")
    folder = tmp_path / "films"
    write_dicom(folder / "a.dcm", 0)
    write_dicom(folder / "b.dcm", 1)
    poses = _two_poses(tmp_path / "poses.pt")
    args = ["register", folder, "-v", ct, *FAST, "--init", "restart", "--json"]
    code, stdout, err = recon(*args, "-o", tmp_path / "reg", "--from", poses)
    assert code == 0, err
    starts = [row["init_rot_deg"][0] for row in json.loads(stdout)["results"]]
    assert starts == pytest.approx([0.0, 5.0], abs=1e-3)
    torch.save(torch.eye(4)[None].repeat(3, 1, 1), tmp_path / "three.pt")
    code, _, err = recon(*args, "-o", tmp_path / "reg3", "--from", tmp_path / "three.pt")
    assert code == 2 and err.count("\n") == 1 and "holds 3 poses for 2 X-rays" in err, err
    assert not (tmp_path / "reg3").exists()


def test_truth_in_order_is_read_for_the_whole_list_in_a_shard(tmp_path, recon):
    """--truth POSES.pt (one pose per X-ray, in order) with --shard 2/2: the shard's X-ray gets
    its own pose (it was refused: 'holds 2 poses for 1 X-rays')."""
    from test_xray_io import small_ct

    ct = small_ct(tmp_path / "ct.nii.gz")
    folder = tmp_path / "films"
    write_dicom(folder / "a.dcm", 0)
    write_dicom(folder / "b.dcm", 1)
    truth = _two_poses(tmp_path / "poses.pt")
    code, stdout, err = recon("register", folder, "-v", ct, "-o", tmp_path / "reg", *FAST,
                              "--truth", truth, "--shard", "2/2", "--json")  # fmt: skip
    assert code == 0, err
    (row,) = json.loads(stdout)["results"]
    assert row["name"] == "b"
    assert row["init_rotation_error_deg"] == pytest.approx(5.0, abs=1e-3)


@pytest.mark.parametrize(
    "empty", ["PositionerPrimaryAngle", "DistanceSourceToPatient", "PositionerSecondaryAngle"]
)
def test_an_empty_positioner_tag_reads_as_absent(tmp_path, empty):
    """A type 2 tag may be present and empty (an XA file's angles): it says nothing, where it
    was refused as "missing or empty" even when --init fixed never needs it."""
    from recon.pipelines.xray.xray import read_xray

    tags = {empty: ""}
    if empty == "DistanceSourceToPatient":  # the magnification then gives the distance
        tags["EstimatedRadiographicMagnificationFactor"] = "1.2"
    xray = read_xray(write_dicom(tmp_path / "e.dcm", **tags))
    if empty == "DistanceSourceToPatient":
        assert xray.positioner == pytest.approx((0.0, 0.0, 1000 / 1.2))
    else:
        assert xray.positioner is None
    assert read_xray(write_dicom(tmp_path / "full.dcm")).positioner == (0.0, 0.0, 850.0)


def test_a_folder_given_as_fiducials_is_named_once(tmp_path):
    """A folder given as the fiducials file read "is a folder, not a fiducials file file"."""
    from recon.pipelines.common.errors import BadInput
    from recon.pipelines.xray.synth_xray import read_fiducials

    with pytest.raises(BadInput, match=r"is a folder, not a fiducials file$"):
        read_fiducials(tmp_path)


def test_skip_done_keeps_a_row_only_for_the_x_ray_it_registered(tmp_path, recon):
    """Two folders each hold x.dcm: --skip-done on the second kept the first one's
    registration (and its mTRE) as the second's; it is refused, before any work. The table
    marks kept rows and counts them."""
    from test_xray_io import small_ct

    ct = small_ct(tmp_path / "ct.nii.gz")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = (
        write_dicom(tmp_path / "a" / "x.dcm", 0),
        write_dicom(tmp_path / "b" / "x.dcm", 1),
    )
    out = tmp_path / "reg"
    args = ["register", "-v", ct, "-o", out, *FAST, "--skip-done"]
    code, _, err = recon(*args[:1], first, *args[1:])
    assert code == 0, err
    code, stdout, err = recon(*args[:1], first, *args[1:])
    assert code == 0 and "ok (earlier run)" in stdout and "skipped (done)" in stdout, stdout
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    code, _, err = recon(*args[:1], second, *args[1:])
    assert code == 2 and err.count("\n") == 1, err
    assert f"registers {first}, another X-ray than {second} of the same name" in err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_fiducials_without_truth_are_refused(tmp_path, recon):
    """--fiducials without --truth was read by nothing and recorded as a setting."""
    xray = write_dicom(tmp_path / "a.dcm", 0)
    (tmp_path / "f.json").write_text('{"points": [[0, 0, 0]]}')
    code, _, err = recon(
        "register", xray, "-o", tmp_path / "reg", "--fiducials", tmp_path / "f.json", *FAST
    )
    assert code == 2 and err.count("\n") == 1, err
    assert "--fiducials is read with --truth only" in err and not (tmp_path / "reg").exists()


def test_a_ct_without_labels_says_that_no_fiducials_and_no_mtre_follow(tmp_path, recon):
    """`synth xray -v CT` without --labels wrote no fiducials.json, and `register --truth` then
    gave no mTRE, neither with a word."""
    import json

    from test_xray_io import small_ct

    ct = small_ct(tmp_path / "ct.nii.gz")
    xrays = tmp_path / "xrays"
    code, out, err = recon("synth", "xray", "-v", ct, "-o", xrays, "-n", 1, "--size", 16, "--json")
    assert code == 0, err
    assert json.loads(out)["fiducials"] is None and not (xrays / "fiducials.json").exists()
    note = "note: no fiducials.json: the CT has no vertebra labels (a --labels map with values 25"
    assert note in err
    args = ("register", xrays, "-v", ct, "-o", tmp_path / "reg", "--truth", xrays / "truth.json")
    code, out, err = recon(*args, *FAST, "--json")
    assert code == 0, err
    assert "so the pose errors come without mTRE" in err
    assert "final_mtre_mm" not in json.loads(out)["results"][0]


@pytest.mark.parametrize(
    "spacing,warned",
    [
        (0.1, "the film is 3.2 x 3.2 mm on the detector (32 x 32 px at 0.1 x 0.1 mm)"),
        (50.0, "the film is 1.6e+03 x 1.6e+03 mm on the detector"),
        (1.0, None),
        (10.0, None),
    ],
)
def test_a_film_of_no_detector_size_is_named_before_the_ct_loads(
    tmp_path, recon, monkeypatch, spacing, warned
):
    """A pixel spacing off by a power of ten (0.1 typed for 1) made a film of a few mm: the
    CT seen through a keyhole, "poor" after all the compute. The warning names the film's size
    before the CT loads; a film a detector could be is not warned of."""
    from recon.pipelines.common.io import write_png

    _stop_at_the_ct(monkeypatch)
    png = tmp_path / "film.png"
    write_png(png, (np.arange(32 * 32).reshape(32, 32) % 200).astype(np.uint8))
    stages = ["--heights", 32, "--iterations", 2, "--patience", 1]
    code, _, err = recon("register", png, "-o", tmp_path / "reg", "--init", "fixed", "--sdd",
                         1000, "--pixel-spacing", spacing, spacing, *stages)  # fmt: skip
    lines = err.splitlines()
    assert code == 2 and lines[-1].endswith("the CT was reached"), err
    if warned is None:
        assert len(lines) == 1, err
    else:
        assert len(lines) == 2 and lines[0].startswith(f"warning: {png}: {warned}"), err
        assert lines[0].endswith("check the pixel spacing"), err


@pytest.mark.parametrize("calibration", [None, "GEOMETRY"])
def test_a_pixel_spacing_of_unstated_calibration_is_named_before_the_ct_loads(
    tmp_path, recon, monkeypatch, calibration
):
    """A DICOM with PixelSpacing but no ImagerPixelSpacing and no Pixel Spacing Calibration Type
    cannot say whether its PixelSpacing was calibrated (PS3.3 10.7.1.1); the detector is read
    as PixelSpacing x the magnification factor, which is wrong by that factor if it was not.
    register says so in one warning line before the CT loads; a stated calibration is not
    warned of."""
    from dicom_files import write_dx

    _stop_at_the_ct(monkeypatch)
    tags = {"DistanceSourceToDetector": "1000", "PixelSpacing": ["1.6", "1.6"]}
    tags["EstimatedRadiographicMagnificationFactor"] = "1.2"
    if calibration:
        tags["PixelSpacingCalibrationType"] = calibration
    pixels = (np.arange(128 * 128).reshape(128, 128) % 4000).astype(np.uint16)
    film = write_dx(tmp_path / "film.dcm", pixels, **tags)
    code, _, err = recon("register", film, "-o", tmp_path / "reg", "--init", "fixed")
    lines = err.splitlines()
    assert code == 2 and lines[-1].endswith("the CT was reached"), err
    if calibration:
        assert len(lines) == 1, err
    else:
        assert len(lines) == 2, err
        assert lines[0].startswith(f"warning: {film}: PixelSpacing (0028,0030) states no "), err
        assert "scaled by EstimatedRadiographicMagnificationFactor 1.2" in lines[0], err
        assert lines[0].endswith("pass --pixel-spacing ROW COL"), err


@pytest.mark.parametrize(
    "given, plan",
    [
        ({}, {"heights": [64, 128], "iterations": [200, 100], "patience": [10, 10]}),
        # one stage: the default --patience 10,10 counted as two, and the run was refused
        ({"heights": "32", "iterations": "30"},
         {"heights": [32], "iterations": [30], "patience": [10]}),
        ({"heights": "32,64,128", "iterations": "50"},
         {"heights": [32, 64, 128], "iterations": [50] * 3, "patience": [10] * 3}),
        ({"patience": "5"}, {"heights": [64, 128], "iterations": [200, 100], "patience": [5, 5]}),
        ({"iterations": "20"},
         {"heights": [64, 128], "iterations": [20, 20], "patience": [10, 10]}),
    ],
)  # fmt: skip
def test_one_value_or_an_even_default_serves_every_stage(given, plan):
    from recon.pipelines.xray.register_inputs import STAGE_DEFAULTS, stage_plan

    assert stage_plan({**STAGE_DEFAULTS, **given}) == plan


@pytest.mark.parametrize(
    "given, message",
    [
        ({"heights": "32,64,128"}, "(3 here), or one for all; got --heights 32,64,128 (3), "
                                   "--iterations 200,100 (2, default), --patience 10,10 (2, "
                                   "default)"),
        ({"heights": "32,64", "patience": "5,5,5"}, "(3 here)"),
    ],
)  # fmt: skip
def test_stage_counts_that_disagree_are_one_line(tmp_path, recon, given, message):
    out = tmp_path / "reg"
    args = [a for flag, value in given.items() for a in (f"--{flag}", value)]
    code, _, err = recon("register", _png(tmp_path / "x.png"), "-o", out, *PNG, *args)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not out.exists()


def test_the_command_s_stage_defaults_are_the_plan_s():
    """stage_plan tells a default left from a value given by STAGE_DEFAULTS: they must agree
    with what `recon register` passes when a flag is left out."""
    import inspect

    from recon.cli.register import register
    from recon.pipelines.xray.register_inputs import STAGE_DEFAULTS

    parameters = inspect.signature(register).parameters
    assert {name: parameters[name].default for name in STAGE_DEFAULTS} == STAGE_DEFAULTS
