"""make-drr's outputs: a stopped batch run keeps the DRRs it made and a --skip-done rerun makes
only the rest; a whole run stopped says what it did not keep; a blank DRR is named; --format
against a file's suffix; the help names the DICOM tag the detector spacing is in."""

from __future__ import annotations

import json

import pytest
import torch
from test_bad_input import refused
from test_drr_batch import files
from test_xray_io import small_ct

from recon.pipelines.xray.pose import pose_from_degrees, save_poses

DETECTOR = ["--sdd", 600, "--size", 16, "--delx", 4.0, "--device", "cpu"]


@pytest.fixture
def drr_args(tmp_path) -> list:
    """make-drr of the small CT at 6 poses, 16 px."""
    ct = small_ct(tmp_path / "ct.nii.gz")
    poses = torch.cat([pose_from_degrees([4 * a, a, 0], [a, 300, 0]) for a in range(6)])
    save_poses(tmp_path / "poses.pt", poses)
    return ["make-drr", "-v", ct, "--pose", tmp_path / "poses.pt", *DETECTOR]


def stop_at_the_third_render(monkeypatch) -> list[int]:
    """Ctrl-C as the renderer starts its third batch (of one DRR each); the list counts the
    batches rendered."""
    from recon.pipelines.xray import drr as drr_module

    calls, real = [], drr_module.make_renderer

    class Stopping:
        def __init__(self, drr) -> None:
            self.drr = drr

        def __getattr__(self, name):
            return getattr(self.drr, name)

        def __call__(self, *args, **kwargs):
            if len(calls) == 2:
                raise KeyboardInterrupt
            calls.append(1)
            return self.drr(*args, **kwargs)

    monkeypatch.setattr(drr_module, "make_renderer", lambda *a, **k: Stopping(real(*a, **k)))
    return calls


@pytest.mark.parametrize(
    "batch, first",
    [(["--skip-done"], 0), (["--shard", "2/2"], 3)],
    ids=["skip-done", "shard"],
)
def test_a_stopped_batch_run_keeps_what_it_made(
    tmp_path, recon, monkeypatch, drr_args, batch, first
):
    """make-drr rendered every pose before writing any, so a batch run stopped late kept
    nothing and a --skip-done rerun stopped again added nothing. Each DRR now lands as it is
    made; the rerun makes only the rest, the same files as a whole run."""
    assert recon(*drr_args, "-q", "-o", tmp_path / "whole")[0] == 0
    whole = json.loads((tmp_path / "whole" / "run.json").read_text())["metrics"]["files"]
    shared = tmp_path / "shared"
    stop_at_the_third_render(monkeypatch)
    code, out, err = recon(*drr_args, "-q", "-o", shared, *batch)
    assert code == 130 and err == (
        f"interrupted (the outputs made so far are kept in {shared}; the same command with "
        "--skip-done makes the rest)\n"
    ), err
    kept = [f"drr_{i:04d}.png" for i in (first, first + 1)]
    assert sorted(p.name for p in shared.iterdir()) == kept  # no run record: written last
    monkeypatch.undo()
    rerun = [*batch, "--skip-done"] if "--shard" in batch else batch
    code, out, err = recon(*drr_args, "--json", "-o", shared, *rerun)
    assert code == 0, err
    result = json.loads(out)
    assert (result["done"], result["skipped"]) == (len(range(first, 6)) - 2, 2)
    made = files(tmp_path / "whole")
    assert files(shared) == {name: made[name] for name in made if int(name[4:8]) >= first}
    # the kept DRRs' rows, which no record listed, give their poses as the whole run's do
    for row in result["files"]:
        assert row["rot_deg"] == whole[row["index"]]["rot_deg"]
        assert row["xyz_mm"] == whole[row["index"]]["xyz_mm"]


@pytest.mark.parametrize("fmt", ["png", "dcm"])
def test_a_rerun_gives_the_scale_of_the_drrs_a_stopped_run_kept(
    tmp_path, recon, monkeypatch, drr_args, fmt
):
    """A 16-bit PNG kept from a stopped run had its scale only in that run's record, which a
    stopped run never writes, so the --skip-done rerun recorded "mm_per_count": null for it;
    the PNG now holds its scale, as a DICOM holds RescaleSlope."""
    args = [*drr_args, "--format", fmt, "-q"]
    assert recon(*args, "-o", tmp_path / "whole")[0] == 0
    whole = json.loads((tmp_path / "whole" / "run.json").read_text())["metrics"]["files"]
    shared = tmp_path / "shared"
    stop_at_the_third_render(monkeypatch)
    assert recon(*args, "-o", shared, "--skip-done")[0] == 130
    monkeypatch.undo()
    code, out, err = recon(*args, "--json", "-o", shared, "--skip-done")
    assert code == 0, err
    recorded = json.loads((shared / "run.json").read_text())["metrics"]["files"]
    for rows in (json.loads(out)["files"], recorded):
        assert [row.get("skipped", False) for row in rows] == [True, True] + [False] * 4
        scales = [row["mm_per_count"] for row in rows]
        made = [row["mm_per_count"] for row in whole]
        # a DICOM's record gives its RescaleSlope as the file holds it (it gave the float
        # before its rounding to a 16-character decimal string)
        assert scales == made, scales


def test_a_stopped_whole_run_says_what_it_did_not_keep(tmp_path, recon, monkeypatch, drr_args):
    """The whole run rendered everything before its hidden folder was made, so its stop line
    was a bare "interrupted"; it now says, as the other commands do, that the DRRs made so far
    went and how to keep them."""
    stop_at_the_third_render(monkeypatch)
    code, _, err = recon(*drr_args, "-q", "-o", tmp_path / "whole")
    assert code == 130, err
    assert err == (
        "interrupted (the 2 files made so far not kept; with --skip-done each output stays as it "
        "is made)\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct.nii.gz", "poses.pt"]


def test_a_blank_drr_is_named_on_stderr_and_in_the_record(tmp_path, recon):
    """A DRR with every pixel 0 (the CT nowhere in view) was written with exit 0 and no word."""
    ct = small_ct(tmp_path / "ct.nii.gz")
    poses = torch.cat([pose_from_degrees([0, 0, 0], [0, 300, z]) for z in (0, 3000, 0)])
    save_poses(tmp_path / "poses.pt", poses)
    args = ["make-drr", "-v", ct, *DETECTOR, "--json"]
    code, out, err = recon(*args, "--pose", tmp_path / "poses.pt", "-o", tmp_path / "drrs")
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "1 of 3 DRRs are blank" in warnings[0], err
    assert "drr_0001.png" in warnings[0] and "--xyz" in warnings[0]
    record = json.loads((tmp_path / "drrs" / "run.json").read_text())["metrics"]["files"]
    for rows in (json.loads(out)["files"], record):
        assert [row.get("blank", False) for row in rows] == [False, True, False]
    assert len(list((tmp_path / "drrs").glob("drr_*.png"))) == 3
    # one file
    one = ["--rot", 0, 0, 0, "--xyz", 0, 300, 3000, "-o", tmp_path / "away.png"]
    code, out, err = recon(*args, *one)
    assert code == 0 and (tmp_path / "away.png").is_file(), err
    assert "warning: away.png is blank (every pixel 0)" in err and err.count("warning") == 1
    assert json.loads(out)["files"][0]["blank"] is True
    code, out, err = recon(*args, "--rot", 0, 0, 0, "--xyz", 0, 300, 0, "-o", tmp_path / "d.png")
    assert code == 0 and "warning:" not in err and "blank" not in json.loads(out)["files"][0]


@pytest.mark.parametrize("name, fmt", [("x.png", "dcm"), ("x.dcm", "png")])
def test_a_format_that_differs_from_the_file_suffix_is_refused(tmp_path, recon, name, fmt):
    """`-o x.png --format dcm` wrote a PNG and ignored --format without a word."""
    ct = small_ct(tmp_path / "ct.nii.gz")
    pose = ["--rot", 0, 0, 0, "--xyz", 0, 300, 0]
    err = refused(recon, tmp_path, "make-drr", "-v", ct, *pose, *DETECTOR, "--format", fmt,
                  "-o", tmp_path / name)  # fmt: skip
    assert f"--format {fmt} differs from the output's suffix" in err
    assert not (tmp_path / name).exists()
    code, _, err = recon("make-drr", "-v", ct, *pose, *DETECTOR, "--format", name[-3:], "-q",
                         "-o", tmp_path / name)  # fmt: skip
    assert code == 0 and (tmp_path / name).is_file(), err
    # a name without a suffix is a folder, for one pose too, as the help says
    code, _, err = recon("make-drr", "-v", ct, *pose, *DETECTOR, "--format", fmt, "-q",
                         "-o", tmp_path / "one")  # fmt: skip
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == [f"drr_0000.{fmt}", "run.json"]


def test_help_names_the_tags_a_drr_dicom_carries(tmp_path, recon, monkeypatch):
    """The help said the detector spacing is in "PixelSpacing [row, col]"; a projection X-ray
    keeps it in ImagerPixelSpacing (PixelSpacing is at the patient), which is what is written."""
    import pydicom

    monkeypatch.setenv("COLUMNS", "250")
    code, text, _ = recon("make-drr", "--help")
    assert code == 0
    prose = " ".join(text.split())
    assert "ImagerPixelSpacing [row, col] (the detector's; PixelSpacing is the patient's" in prose
    assert "Any other name is a folder" in prose
    ct = small_ct(tmp_path / "ct.nii.gz")
    code, _, err = recon("make-drr", "-v", ct, "--rot", 0, 0, 0, "--xyz", 0, 300, 0, *DETECTOR,
                         "--dely", 3.0, "-q", "-o", tmp_path / "d.dcm")  # fmt: skip
    assert code == 0, err
    dataset = pydicom.dcmread(tmp_path / "d.dcm", stop_before_pixels=True)
    assert [float(v) for v in dataset.ImagerPixelSpacing] == [3.0, 4.0]
