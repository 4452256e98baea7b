"""Multi-frame X-ray DICOMs (a fluoroscopy or rotational angiography run), written by pydicom
here (not by `recon synth`): `register --frame N` reads frame N and its positioner angles
(frame 1's plus the run's angle increments); a run without --frame is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from dicom_files import FILM_SDD, edit_dicom, film_tags, write_dx

from recon.pipelines.common.errors import BadInput
from recon.pipelines.xray.pose import pose_from_degrees
from recon.pipelines.xray.xray import read_xray

FRAMES, START, STEP = 5, -20.0, 10.0  # primary angle of frame 1 and its change per frame, deg
OFFSET_ROT, XYZ = (3.0, -2.0, 2.0), (6.0, 835.0, -5.0)  # each frame's pose off its angles
HEIGHT, WIDTH, SPACING = 64, 56, 6.0


def true_pose(frame: int) -> torch.Tensor:
    primary = START + STEP * (frame - 1)
    return pose_from_degrees([primary + OFFSET_ROT[0], *OFFSET_ROT[1:]], XYZ)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Line integrals (FRAMES, H, W) and two XA runs of them: the increment as one value, and
    as absolute angles per frame (the positioner angles 0, as the standard permits)."""
    from diffdrr.drr import DRR
    from diffdrr.pose import RigidTransform

    from recon.pipelines.xray.volume import load_ct

    folder = tmp_path_factory.mktemp("run")
    subject = load_ct(None, None, "AP", spacing_mm=4.0)
    drr = DRR(subject, sdd=FILM_SDD, height=HEIGHT, width=WIDTH, delx=SPACING, dely=SPACING)
    with torch.no_grad():
        poses = torch.cat([true_pose(f) for f in range(1, FRAMES + 1)])
        lines = drr(RigidTransform(poses))[:, 0].numpy()
    # as an angiography system stores a run: log of the beam (dense is dark), no sign
    counts = np.round(4000 * (1 - lines / lines.max())).astype(np.uint16)
    tags = {**film_tags(SPACING), "Modality": "XA", "PixelIntensityRelationship": "LOG"}
    stacked = counts.reshape(FRAMES * HEIGHT, WIDTH)
    steady = write_dx(folder / "steady.dcm", stacked, **tags)
    edit_dicom(
        steady,
        Rows=HEIGHT,
        NumberOfFrames=str(FRAMES),
        PositionerPrimaryAngle=str(START),
        PositionerPrimaryAngleIncrement=str(STEP),
    )
    absolute = write_dx(folder / "absolute.dcm", stacked, **tags)
    edit_dicom(
        absolute,
        Rows=HEIGHT,
        NumberOfFrames=str(FRAMES),
        PositionerPrimaryAngle="0",
        PositionerPrimaryAngleIncrement=[str(START + STEP * k) for k in range(FRAMES)],
        PositionerSecondaryAngleIncrement=["0"] * FRAMES,
    )
    return lines, {"steady": steady, "absolute": absolute}, folder


def test_frame_n_and_its_angles(run):
    lines, files, _ = run
    for name, path in files.items():
        for frame in (1, 4):
            xray = read_xray(path, frame=frame)
            line = lines[frame - 1]
            expected = 4000 - np.round(4000 * (1 - line / lines.max()))
            expected = (expected - expected.min()) / (expected.max() - expected.min())
            assert np.allclose(xray.image[0, 0].numpy(), expected, atol=1e-6), (name, frame)
            primary, secondary, sdp = xray.positioner
            assert (primary, secondary, sdp) == pytest.approx(
                (START + STEP * (frame - 1), 0.0, 850.0)
            ), (name, frame)
            assert xray.frame_number == frame


@pytest.mark.parametrize("count", ["", "0"])
def test_a_run_whose_frame_count_is_empty_is_counted_from_its_pixels(run, tmp_path, count):
    _, files, _ = run
    blank = edit_dicom(files["steady"], tmp_path / "blank.dcm", NumberOfFrames=count)
    with pytest.raises(BadInput, match=r"holds 5 frames \(a run\)"):
        read_xray(blank)
    assert torch.equal(read_xray(blank, frame=4).image, read_xray(files["steady"], frame=4).image)


def test_a_run_needs_a_frame_and_a_wrong_frame_or_increment_is_one_line(run, tmp_path, recon):
    _, files, _ = run
    with pytest.raises(BadInput, match=r"holds 5 frames \(a run\); pick one with --frame N"):
        read_xray(files["steady"])
    bad = edit_dicom(
        files["absolute"], tmp_path / "bad.dcm", PositionerPrimaryAngleIncrement=["1", "2"]
    )
    cases = [
        ([files["steady"]], "holds 5 frames (a run); pick one with --frame N (1 to 5)"),
        ([files["steady"], "--frame", 6], "--frame 6 is not one of its 5 frames"),
        ([bad, "--frame", 2], "PositionerPrimaryAngleIncrement holds 2 values for 5 frames"),
        ([files["steady"], "--frame", 0], "--frame must be"),
    ]
    for args, message in cases:
        out = tmp_path / "reg"
        code, _, err = recon("register", *args, "-o", out, "--device", "cpu")
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and message in lines[0], (args, err)
        assert not out.exists()
    code, _, err = recon("embed-spine", files["steady"], "-o", tmp_path / "e.json")
    assert code == 2 and "holds 5 frames (a run); a spine X-ray is one frame" in err, err
    enhanced = edit_dicom(
        files["steady"], tmp_path / "enhanced.dcm", SOPClassUID="1.2.840.10008.5.1.4.1.1.12.1.1"
    )
    code, _, err = recon("register", enhanced, "--frame", 1, "-o", tmp_path / "reg")
    assert code == 2 and "an Enhanced XA image keeps its geometry" in err, err


@pytest.mark.slow
def test_frame_4_of_a_rotational_run_registers_from_its_own_angles(run, tmp_path, recon):
    """--init dicom starts frame 4 at its own angle (+10 deg), 17.7 mm mTRE from its truth;
    frame 1's angles would start it 30 deg away. Its outputs are named after the frame, so
    frames of one run do not collide."""
    _, files, folder = run
    truth = folder / "truth4.json"
    truth.write_text(json.dumps(true_pose(4).tolist()))
    coarse = ["--ct-spacing", 4, "--heights", "32,64", "--iterations", "150,60", "--threads", 1]
    code, out, err = recon(
        "register", files["absolute"], "--frame", 4, "-o", tmp_path / "reg", "--init", "dicom",
        "--truth", truth, *coarse, "--device", "cpu", "--json",
    )  # fmt: skip
    assert code == 0, err
    row = json.loads(out)["results"][0]
    assert row["frame"] == 4 and row["init_rot_deg"][0] == pytest.approx(10.0)
    assert row["name"] == "absolute_frame4" and (tmp_path / "reg" / "absolute_frame4").is_dir()
    assert row["init_mtre_mm"] > 10 and row["final_mtre_mm"] < 1.5, row


def test_one_damaged_frame_of_a_compressed_run_spoils_only_itself(run, tmp_path):
    """A JPEG-LS run whose last frame lost its start-of-image marker: the other frames read as
    the uncompressed run's; the damaged one is one line naming it."""
    import pydicom
    from dicom_files import compress
    from pydicom.encaps import encapsulate, generate_frames

    _, files, _ = run
    path = compress(edit_dicom(files["steady"], tmp_path / "run.dcm"), "1.2.840.10008.1.2.4.80")
    ds = pydicom.dcmread(path)
    frames = list(generate_frames(ds.PixelData, number_of_frames=FRAMES))
    frames[-1] = b"\0\0" + frames[-1][2:]
    ds.PixelData = encapsulate(frames)
    ds.save_as(path)
    assert torch.equal(read_xray(path, frame=2).image, read_xray(files["steady"], frame=2).image)
    with pytest.raises(BadInput, match="damaged JPEG stream in frame 5: no start-of-image"):
        read_xray(path, frame=5)
