"""Detector orientation: Patient Orientation and Field of View tags, both column conventions,
a hand-written DICOM registered right and read mirrored (exit 1), and bad orientation input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from dicom_files import FILM_SDD, TRUE_ROT, TRUE_XYZ, edit_dicom
from test_xray_io import small_ct

from recon.pipelines.common.errors import BadInput
from recon.pipelines.xray.orientation import (
    image_frame,
    parse_patient_orientation,
    stored_orientation,
)

TRUTH_ROT, TRUTH_XYZ = TRUE_ROT, TRUE_XYZ  # deg (ZXY), mm: the pose of ap_line_integrals
SDD, ERMF = FILM_SDD, 1.2  # source-to-detector mm; magnification: the patient at SDD / 1.2 = 850


def test_patient_orientation_parsing_and_frames():
    assert parse_patient_orientation(["L", "F"], "x") == ("L", "F")
    assert parse_patient_orientation("", "x") is None
    assert image_frame(("L", "F"), "AP", "x", "t").reverse_x_axis is True
    assert image_frame(("R", "F"), "PA", "x", "t").reverse_x_axis is False
    assert image_frame(("LH", "FL"), "AP", "x", "t").reverse_x_axis is True  # oblique letters
    # stored on its side (head to the right): one quarter turn back, same column parity
    turned = image_frame(("H", "L"), "AP", "x", "t")
    assert (turned.quarter_turns, turned.patient_orientation) == (1, "L\\F")
    upside_down = image_frame(("R", "H"), "AP", "x", "t")
    assert (upside_down.quarter_turns, upside_down.patient_orientation) == (2, "L\\F")
    # Field of View tags without Patient Orientation: the radiological display turned/flipped
    assert stored_orientation(0, False) == ("L", "F")
    assert stored_orientation(0, True) == ("R", "F")
    assert stored_orientation(90, False) == ("H", "L")
    assert image_frame(stored_orientation(270, True), "AP", "x", "t").reverse_x_axis is False
    for bad in (["L"], ["L", "R"], ["X", "F"], ["LR", "F"], ["L", "F", "A"], "L\\"):
        with pytest.raises(BadInput, match="malformed"):
            parse_patient_orientation(bad, "x.dcm")
    with pytest.raises(BadInput, match="lateral"):
        image_frame(("P", "F"), "AP", "x.dcm", "t")
    with pytest.raises(BadInput, match="lateral"):
        image_frame(("H", "A"), "PA", "x.dcm", "t")
    with pytest.raises(BadInput, match="no head-feet"):
        image_frame(("L", "P"), "AP", "x.dcm", "t")


@pytest.mark.parametrize("view", ["AP", "PA"])
def test_reverse_x_axis_puts_patient_left_along_columns(view):
    """diffdrr's geometry: with reverse_x_axis=True the patient's left (-x in RAS+) lies along
    increasing columns and the head at the top, in the AP and the PA view."""
    from recon.pipelines.xray.drr import Intrinsics, make_renderer, project_points
    from recon.pipelines.xray.pose import pose_from_degrees
    from recon.pipelines.xray.volume import load_ct

    subject = load_ct(None, None, view, spacing_mm=16.0)
    pose = pose_from_degrees([0, 0, 0], [0, 850 if view == "AP" else -850, 0])
    points = torch.tensor([[[0.0, 0.0, 0.0], [-50.0, 0.0, 0.0], [0.0, 0.0, 50.0]]])
    for reverse in (True, False):
        drr = make_renderer(subject, Intrinsics(SDD, 32, 32, 8.0, 8.0, reverse_x_axis=reverse))
        centre, left, head = project_points(drr, pose, points)[0]
        assert bool(left[0] > centre[0]) is reverse  # patient's left toward higher columns
        assert bool(head[1] < centre[1])  # head toward the top row


@pytest.fixture(scope="module")
def handmade(tmp_path_factory):
    """A DX DICOM written with pydicom alone (no recon writer): an AP DRR of the bundled CT in
    xvr's column convention (Patient Orientation R\\F), ImagerPixelSpacing at the detector and
    an Estimated Radiographic Magnification Factor instead of DistanceSourceToPatient."""
    import pydicom
    from dicom_files import ap_line_integrals, write_dx

    from recon.pipelines.xray.pose import pose_from_degrees

    folder = tmp_path_factory.mktemp("handmade")
    image = ap_line_integrals(64, 56, 6.0, reverse_x_axis=False)
    counts = np.round(image * 4000).astype(np.uint16)
    path = write_dx(
        folder / "handmade.dcm",
        counts,
        bits_stored=12,
        RescaleSlope="2",
        RescaleIntercept="-100",
        DistanceSourceToDetector=str(SDD),
        ImagerPixelSpacing=["6.0", "6.0"],
        EstimatedRadiographicMagnificationFactor=str(ERMF),
        PositionerPrimaryAngle="0",
        PositionerSecondaryAngle="0",
        PatientOrientation=["R", "F"],
        ViewPosition="AP",
    )
    truth = folder / "truth.json"
    truth.write_text(json.dumps(pose_from_degrees(TRUTH_ROT, TRUTH_XYZ).tolist()))
    assert pydicom.dcmread(path).PatientOrientation == ["R", "F"]
    return path, truth


def test_handmade_dicom_geometry(handmade):
    from recon.pipelines.xray.xray import read_xray

    xray = read_xray(handmade[0])
    assert xray.intrinsics.reverse_x_axis is False and xray.frame.patient_orientation == "R\\F"
    assert (xray.intrinsics.delx, xray.intrinsics.dely, xray.intrinsics.width) == (6.0, 6.0, 56)
    assert xray.positioner == pytest.approx((0.0, 0.0, SDD / ERMF))
    assert xray.spacing_source == "ImagerPixelSpacing"
    flipped = read_xray(handmade[0], reverse_x_axis=True)
    assert torch.equal(flipped.image, xray.image) and flipped.intrinsics.reverse_x_axis is True


def test_field_of_view_tags_without_patient_orientation(handmade, tmp_path):
    """No Patient Orientation: the radiological display (L\\F), mirrored by Field of View
    Horizontal Flip and turned back from Field of View Rotation."""
    import pydicom

    from recon.pipelines.xray.xray import read_xray

    source, reference = handmade[0], read_xray(handmade[0])
    plain = read_xray(edit_dicom(source, tmp_path / "plain.dcm", PatientOrientation=None))
    assert plain.intrinsics.reverse_x_axis is True and "radiological" in plain.frame.source
    flip = edit_dicom(
        source, tmp_path / "flip.dcm", PatientOrientation=None, FieldOfViewHorizontalFlip="YES"
    )
    assert read_xray(flip).intrinsics.reverse_x_axis is False
    ds = pydicom.dcmread(source)
    del ds.PatientOrientation
    turned = np.rot90(ds.pixel_array, -1)  # stored turned clockwise by 90 deg
    ds.Rows, ds.Columns = turned.shape
    ds.PixelData = np.ascontiguousarray(turned).tobytes()
    ds.FieldOfViewRotation = "90"
    ds.ImagerPixelSpacing = ["6.0", "5.0"]
    ds.save_as(tmp_path / "turned.dcm")
    back = read_xray(tmp_path / "turned.dcm")
    assert back.frame.quarter_turns == 1 and torch.equal(back.image, reference.image)
    assert (back.intrinsics.dely, back.intrinsics.delx) == (5.0, 6.0)


COARSE = ["--ct-spacing", 4, "--heights", "32,64", "--iterations", "150,60", "--threads", 1]


@pytest.mark.slow
def test_handmade_dicom_registers_and_mirrored_read_exits_1(handmade, tmp_path, recon):
    path, truth = handmade
    common = [path, "--init", "dicom", "--truth", truth, *COARSE, "--device", "cpu", "--json"]
    code, out, err = recon("register", "-o", tmp_path / "right", *common)
    assert code == 0, err
    row = json.loads(out)["results"][0]
    assert row["patient_orientation"] == "R\\F" and row["reverse_x_axis"] is False
    assert row["init_mtre_mm"] > 10 and row["final_mtre_mm"] < 1.5, row
    # the same pixels read the other way: a mirror image, which no pose can match
    code, out, err = recon("register", "-o", tmp_path / "wrong", "--reverse-x-axis", *common)
    assert code == 1, err
    message = err.strip().splitlines()[-1]
    assert "orientation" in message and "--no-reverse-x-axis" in message
    results = json.loads((tmp_path / "wrong" / "results.json").read_text())
    assert results["results"][0]["status"] == "mirrored"
    assert results["results"][0]["final_mtre_mm"] > 5
    # the failed registration's row is printed too: --json gives the results, not only an error
    assert json.loads(out)["results"][0]["status"] == "mirrored" and out.count("\n") == 1


@pytest.mark.parametrize(
    "tags, args, expected",
    [
        ({"PatientOrientation": "L\\R"}, [], "malformed"),
        ({"PatientOrientation": "Q\\F"}, [], "malformed"),
        ({"PatientOrientation": "P\\F"}, [], "lateral"),
        ({"ViewPosition": "PA"}, [], "--orientation PA"),
        ({}, ["--orientation", "PA"], "View Position"),
    ],
)
def test_bad_orientation_exits_2_and_writes_nothing(
    handmade, tmp_path, recon, tags, args, expected
):
    path = edit_dicom(handmade[0], tmp_path / "variant.dcm", **tags)
    out = tmp_path / "reg"
    code, _, err = recon("register", path, "-o", out, "--init", "dicom", *args, "--device", "cpu")
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], err
    assert not out.exists()


def test_png_without_sdd_exits_2_and_writes_nothing(tmp_path, recon):
    from recon.pipelines.common.io import write_png

    write_png(tmp_path / "x.png", (np.arange(32 * 32).reshape(32, 32) % 200).astype(np.uint8))
    out = tmp_path / "reg"
    code, _, err = recon("register", tmp_path / "x.png", "-o", out, "--pixel-spacing", 1, 1)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "--sdd" in lines[0]
    assert not out.exists()


@pytest.mark.parametrize("reverse", [True, False])
def test_make_drr_outputs_read_back_in_their_convention(tmp_path, recon, reverse):
    """A PNG of make-drr (default flags) and a DICOM of either setting are read back with the
    columns they were rendered with: re-rendering at the same pose gives the same image."""
    from recon.pipelines.xray.drr import make_renderer, render_with
    from recon.pipelines.xray.pose import pose_from_degrees
    from recon.pipelines.xray.registration import standardise
    from recon.pipelines.xray.volume import load_ct
    from recon.pipelines.xray.xray import read_xray

    flag = "--reverse-x-axis" if reverse else "--no-reverse-x-axis"
    ct = small_ct(tmp_path / "ct.nii.gz")
    pose = ["-v", ct, "--rot", 8, 0, 0, "--xyz", 0, 300, 0, "--sdd", 600, "--height", 24]
    for suffix in (".png", ".dcm"):
        args = pose + ["--delx", 3.0] + ([] if suffix == ".png" else [flag])
        out = tmp_path / f"{suffix[1:]}{suffix}"  # png.png, dcm.dcm: each its own run record
        code, _, err = recon("make-drr", *args, "-o", out, "-q")
        assert code == 0, err
    png = read_xray(tmp_path / "png.png", sdd=600.0, spacing=(3.0, 3.0))
    dicom = read_xray(tmp_path / "dcm.dcm")
    assert png.intrinsics.reverse_x_axis is True
    assert dicom.intrinsics.reverse_x_axis is reverse
    subject = load_ct(ct)
    for xray in (png, dicom):
        drr = make_renderer(subject, xray.intrinsics)
        again = standardise(render_with(drr, pose_from_degrees([8, 0, 0], [0, 300, 0])))
        assert float((again - xray.image).abs().max()) < 1e-3
        assert float((again.flip(-1) - xray.image).abs().max()) > 0.1


def test_verdicts_nan_mirror_and_json():
    """A NaN similarity or a better-matching mirror image is a failure with one line; the
    results document never holds NaN."""
    from types import SimpleNamespace

    from recon.pipelines.xray.register_results import failure_message, finite_or_none, judge
    from recon.pipelines.xray.registration import RegistrationConfig

    config = RegistrationConfig()

    def never():
        raise AssertionError("the mirror check must not run")

    def mirror(similarity, mirrored):
        check = SimpleNamespace(similarity=similarity, mirrored_similarity=mirrored)
        check.mirrored_is_better = lambda margin: mirrored > similarity + margin
        return lambda: check

    nan = judge(SimpleNamespace(similarity=float("nan")), config, 0.3, never)
    assert nan == {"status": "not a number"}
    assert judge(SimpleNamespace(similarity=0.93), config, 0.3, never)["status"] == "ok"
    mirrored = judge(SimpleNamespace(similarity=0.55), config, 0.3, mirror(0.6, 0.9))
    assert mirrored["status"] == "mirrored"
    assert judge(SimpleNamespace(similarity=0.25), config, 0.3, mirror(0.3, 0.3))["status"] == (
        "poor"
    )
    row = {"name": "a", "reverse_x_axis": True, "columns": "L\\F (DICOM)", **mirrored}
    message = failure_message([row], 0.3)
    assert "orientation" in message and "--no-reverse-x-axis" in message and "\n" not in message
    # both figures are the coarse stage's (the table shows the X-ray's final similarity, 0.55)
    assert "(coarse-stage similarity 0.90 against 0.60)" in message
    rows = [finite_or_none({"name": "b", "similarity": float("nan"), "pose": [float("inf")]})]
    assert "NaN" in failure_message([{**rows[0], **nan}], 0.3)
    assert json.loads(json.dumps(rows, allow_nan=False))[0]["similarity"] is None


@pytest.mark.parametrize("orientation", [["R", "F"], ["L", "F"], ["H", "L"], ["F", "R"]])
def test_detector_active_origin_names_one_stored_pixel(tmp_path, orientation):
    """DetectorActiveOrigin belongs to the stored pixels: whatever the Patient Orientation (and
    so diffdrr's reverse_x_axis and the quarter turns), the source's foot on the detector lands
    on the stored pixel the tag names (xvr's reading: centre + origin / spacing)."""
    import pydicom

    from recon.pipelines.xray.drr import Intrinsics
    from recon.pipelines.xray.xray import read_xray, write_xray_dicom

    height, width, dely, delx, origin = 41, 61, 1.0, 0.5, (5.0, 3.5)
    path = tmp_path / "film.dcm"
    pixels = np.random.default_rng(0).integers(100, 4000, (height, width)).astype(np.uint16)
    write_xray_dicom(path, pixels, Intrinsics(1000.0, height, width, delx, dely))
    ds = pydicom.dcmread(path)
    ds.PatientOrientation, ds.DetectorActiveOrigin = orientation, list(origin)
    ds.ImagerPixelSpacing = ds.PixelSpacing = [dely, delx]
    ds.save_as(path)
    xray = read_xray(path)
    foot = np.round(principal_pixel(xray.intrinsics)).astype(int)
    marker = np.zeros((height, width))
    marker[int((height - 1) / 2 + origin[0] / dely), int((width - 1) / 2 + origin[1] / delx)] = 1
    assert tuple(foot) == tuple(np.argwhere(np.rot90(marker, xray.frame.quarter_turns))[0])


def test_make_drr_dicom_keeps_its_principal_point(tmp_path):
    """A detector with an off-centre principal point, written and read back either way round."""
    from recon.pipelines.xray.drr import Intrinsics
    from recon.pipelines.xray.xray import read_xray, write_xray_dicom

    for reverse in (True, False):
        detector = Intrinsics(900.0, 30, 40, 2.0, 1.5, x0=6.0, y0=-4.5, reverse_x_axis=reverse)
        path = tmp_path / f"{reverse}.dcm"
        pixels = np.arange(1200, dtype=np.uint16).reshape(30, 40)
        write_xray_dicom(path, pixels, detector)
        assert read_xray(path).intrinsics == detector


def test_learning_rates_halve_at_each_finer_stage(tmp_path):
    """Adam's first step moves each angle by the stage's rate: 1e-2, then 1/2, 1/4 of it."""
    from recon.pipelines.xray.drr import Intrinsics, make_renderer, render_with
    from recon.pipelines.xray.pose import pose_from_degrees
    from recon.pipelines.xray.registration import (
        EulerPose,
        RegistrationConfig,
        register,
        standardise,
    )
    from recon.pipelines.xray.volume import load_ct

    subject = load_ct(small_ct(tmp_path / "ct.nii.gz"))
    detector = Intrinsics(600.0, 24, 24, 4.0, 4.0)
    truth = pose_from_degrees([0, 0, 0], [0, 300, 0])
    image = standardise(render_with(make_renderer(subject, detector), truth))
    config = RegistrationConfig(
        heights=[16, 20, 24], iterations=[2, 2, 2], patience=[5, 5, 5], lr_rot=1e-2, lr_xyz=0.0
    )
    start = pose_from_degrees([4, -3, 2], [0, 300, 0])
    log = register(subject, image, detector, start, config).log
    rots = torch.cat([EulerPose(start).rot.detach(), log["rots"]])  # the start, then each step
    first = [log["heights"].index(h) for h in (16, 20, 24)]
    steps = [(rots[i + 1] - rots[i]).abs().max().item() for i in first]
    assert steps == pytest.approx([1e-2, 5e-3, 2.5e-3], rel=0.02)


@pytest.mark.parametrize(
    "frame, primary",
    [("AP", 12.0), ("PA", 12.0), ("AP", 192.0), ("PA", 192.0), ("AP", -150.0)],
    ids=["AP", "PA", "AP-from-behind", "PA-from-the-front", "AP-from-behind-oblique"],
)
def test_make_drr_dicom_positioner_reads_back_as_its_pose(tmp_path, frame, primary):
    """The positioner tags of a make-drr DICOM give --init dicom, in the frame its View
    Position names, the source and detector it was rendered with. A view from behind in the AP
    frame is View Position PA, which register reads with --orientation PA: its tags held the AP
    frame's angles (-168 / -7 for rot 192, -7), so that start was 180 deg off and the run ended
    mirrored 95 mm away; they are now the PA frame's (12 / 7), the same physical pose."""
    from recon.pipelines.xray.drr import _detector_points
    from recon.pipelines.xray.make_drr import DEFAULT_DETECTOR, write_drr
    from recon.pipelines.xray.pose import pose_from_degrees
    from recon.pipelines.xray.register_inputs import dicom_pose
    from recon.pipelines.xray.volume import frame_reorient
    from recon.pipelines.xray.xray import read_xray

    side = -1.0 if frame == "PA" else 1.0
    pose = pose_from_degrees([primary, -7.0, 0.0], [0.0, side * 850.0, 0.0])
    detector = DEFAULT_DETECTOR.resized(32)
    points = _detector_points(frame_reorient(frame), detector, pose)
    beam = points[0, 0] - points[0, 3]
    view = "AP" if float(beam[1]) < 0 else "PA"  # the source in front (+y, anterior): AP
    assert (view == frame) == (abs(primary) < 90)
    shown = {"view_position": view, "patient_orientation": None}
    path = tmp_path / "drr.dcm"
    write_drr(path, torch.rand(32, 32), detector, pose[0], view=frame, shown=shown)
    xray = read_xray(path, orientation=view)
    read = _detector_points(frame_reorient(view), detector, dicom_pose(xray, view))
    # the source, the detector's centre and its rows where they were; across frames the
    # columns run the other way (the image is the mirror, as its Patient Orientation says)
    assert torch.allclose(read[0, [0, 2, 3]], points[0, [0, 2, 3]], atol=1e-2)
    flip = 1.0 if view == frame else -1.0
    across = read[0, 1] - read[0, 0]
    assert torch.allclose(across, flip * (points[0, 1] - points[0, 0]), atol=1e-4)


def principal_pixel(i) -> np.ndarray:
    """(row, column) of the foot of the source's perpendicular on diffdrr's detector."""
    from recon.pipelines.xray.drr import detector_axes

    def where_zero(axis: torch.Tensor) -> float:
        axis = axis.numpy()
        index = np.arange(len(axis))
        return float(
            np.interp(0.0, axis, index)
            if axis[0] < axis[-1]
            else np.interp(0.0, axis[::-1], index[::-1])
        )

    xs, ys = detector_axes(i)
    return np.array([where_zero(ys), where_zero(xs)])


@pytest.mark.parametrize("reverse", [True, False])
def test_odd_crop_keeps_the_principal_point_on_its_pixel(reverse):
    """--crop removes crop // 2 pixels from the top and left: the principal point stays on the
    same pixel of the film for even and odd crops alike."""
    from recon.pipelines.xray.drr import Intrinsics
    from recon.pipelines.xray.xray import Xray, preprocess

    detector = Intrinsics(1000.0, 40, 50, 0.7, 0.5, x0=3.0, y0=-2.0, reverse_x_axis=reverse)
    image = torch.zeros(1, 1, 40, 50)
    image[..., 20, 25] = 1.0
    before = principal_pixel(detector)
    for crop in (3, 4, 5):
        cropped, after = preprocess(Xray(Path("x.png"), image, detector, "MONOCHROME2"), crop)
        assert cropped.shape[-2:] == (40 - crop, 50 - crop)
        first = crop // 2
        assert cropped[0, 0, 20 - first, 25 - first] > 0.99
        assert principal_pixel(after) == pytest.approx(before - first, abs=1e-3)


def test_reproject_gives_the_view_of_another_detector(tmp_path):
    """An X-ray recorded on one detector, reprojected onto another (source distance, spacing,
    principal point, column direction all different), matches the DRR rendered on that other
    detector at the same pose: exactly where the pixels' rays meet, closely on a finer film; a
    plain mirror-and-resize does not."""
    from recon.pipelines.xray.drr import Intrinsics, make_renderer, render_with, reproject
    from recon.pipelines.xray.pose import pose_from_degrees
    from recon.pipelines.xray.registration import resize_image
    from recon.pipelines.xray.volume import load_ct

    subject = load_ct(small_ct(tmp_path / "ct.nii.gz"))
    pose = pose_from_degrees([5, -3, 2], [4, 300, -6])
    wanted = Intrinsics(600.0, 48, 48, 3.0, 3.0, reverse_x_axis=False)
    target = render_with(make_renderer(subject, wanted), pose)

    def ncc(a, b):
        a, b = a.flatten() - a.mean(), b.flatten() - b.mean()
        return float(a @ b / (a.norm() * b.norm()))

    # 2.5 mm at 500 mm is 3 mm at 600 mm; the principal point 2 columns and 1 row off
    film = Intrinsics(500.0, 60, 60, 2.5, 2.5, x0=5.0, y0=-2.5, reverse_x_axis=True)
    image = render_with(make_renderer(subject, film), pose)
    assert float((reproject(image, film, wanted) - target).abs().max()) < 1e-3 * target.max()
    assert ncc(resize_image(image.flip(-1), 48, 48), target) < 0.8
    finer = Intrinsics(500.0, 120, 120, 1.25, 1.25, x0=5.0, y0=-2.5, reverse_x_axis=True)
    image = render_with(make_renderer(subject, finer), pose)
    # (0.982: the finer film is area-averaged, the target point-sampled on sharp-edged bone)
    assert ncc(reproject(image, finer, wanted), target) > 0.95
    assert ncc(resize_image(image.flip(-1), 48, 48), target) < 0.8


def test_make_drr_names_what_each_image_shows_and_refuses_a_ct_behind_the_source(tmp_path, recon):
    """A DICOM from make-drr said L\\F and View Position AP whatever the pose: a lateral view
    (columns toward the back) and one from behind were labelled as the nominal AP view. And
    --orientation PA --xyz 0 850 0 (the AP frame's source side) put the CT behind the source,
    which diffdrr draws through the source, upside down, under the same L\\F."""
    import nibabel as nib
    import pydicom

    hu = np.full((24, 24, 24), -1000.0, np.float32)
    hu[6:18, 6:18, 2:22] = 40.0
    hu[14:18, 8:12, 14:20] = 1200.0  # bone at +x (the patient's right), high
    ct = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(hu, np.diag([4.0, 4.0, 4.0, 1.0])), ct)
    detector = ["--size", 32, "--delx", 4, "--sdd", 1020, "--device", "cpu", "--json", "-q"]
    cases = [  # (--orientation, --rot, --xyz y, Patient Orientation, View Position)
        ("AP", (0, 0, 0), 850, "L\\F", "AP"),
        ("PA", (0, 0, 0), -850, "L\\F", "PA"),
        ("AP", (90, 0, 0), 850, "P\\F", "RL"),  # the C-arm turned to the patient's left
        ("AP", (180, 0, 0), 850, "R\\F", "PA"),  # from behind in the AP frame: mirrored
    ]
    for view, rot, y, orientation, position in cases:
        out = tmp_path / f"{view}_{rot[0]}.dcm"
        code, text, err = recon("make-drr", "-v", ct, "--orientation", view, "--rot", *rot,
                                "--xyz", 0, y, 0, *detector, "-o", out)  # fmt: skip
        assert code == 0, err
        row = json.loads(text)["files"][0]
        assert (row["patient_orientation"], row["view_position"]) == (orientation, position)
        ds = pydicom.dcmread(out)
        assert "\\".join(ds.PatientOrientation) == orientation and ds.ViewPosition == position
    # the bone shows where the tag says: at the top, on the side of the patient's right
    image = pydicom.dcmread(tmp_path / "AP_0.dcm").pixel_array.astype(float)
    row, column = np.unravel_index(np.argmax(image), image.shape)
    assert row < 16 and column < 16  # L\\F: the right toward column 0, the head toward row 0
    for view, y in (("PA", 850), ("AP", -850)):
        out = tmp_path / "behind.dcm"
        code, _, err = recon("make-drr", "-v", ct, "--orientation", view, "--rot", 0, 0, 0,
                             "--xyz", 0, y, 0, *detector[:-2], "-q", "-o", out)  # fmt: skip
        assert code == 2 and err.count("\n") == 1, err
        assert "puts the CT behind the source" in err and f"--xyz 0 {-y} 0" in err, err
        assert not out.exists()
    # register refuses such a start too: from there it converged upside down, far off
    film, out = tmp_path / "PA_0.dcm", tmp_path / "reg"
    code, _, err = recon("register", film, "-v", ct, "--orientation", "PA", "--init", "fixed",
                         "--rot", 0, 0, 0, "--xyz", 0, 850, 0, "--device", "cpu", "-q",
                         "-o", out)  # fmt: skip
    assert code == 2 and err.count("\n") == 1, err
    assert "the starting pose (--rot/--xyz) puts the CT behind the source" in err, err
    assert not out.exists()


def test_a_detector_that_cuts_through_the_ct_is_refused(tmp_path, recon):
    """make-drr --xyz 0 850 0 --sdd 100 put the detector 750 mm before the CT and wrote a blank
    DRR with exit 0 (and --sdd 800 one of the CT's front half only); register started from such
    a pose too."""
    import nibabel as nib

    hu = np.full((24, 24, 24), -1000.0, np.float32)
    hu[6:18, 6:18, 2:22] = 40.0
    hu[10:14, 10:14, 6:18] = 1200.0  # bone (diffdrr makes air as dense as the least soft tissue)
    ct = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(hu, np.diag([4.0, 4.0, 4.0, 1.0])), ct)
    pose = ["--rot", 0, 0, 0, "--xyz", 0, 850, 0, "--size", 32, "--delx", 4, "--device", "cpu"]
    for sdd in (100, 800, 850):
        out = tmp_path / f"d{sdd}.png"
        code, _, err = recon("make-drr", "-v", ct, *pose, "--sdd", sdd, "-q", "-o", out)
        assert code == 2 and err.count("\n") == 1, err
        assert "--rot/--xyz puts the CT's centre 850 mm from the source, at or past the " in err
        assert f"detector (--sdd {sdd} mm)" in err, err
        assert not out.exists() and not (tmp_path / f"d{sdd}.png.run.json").exists()
    film = tmp_path / "film.png"
    code, _, err = recon("make-drr", "-v", ct, *pose, "--sdd", 1020, "-q", "-o", film)
    assert code == 0, err
    out = tmp_path / "reg"
    code, _, err = recon("register", film, "-v", ct, "--sdd", 700, "--pixel-spacing", 4, 4,
                         "--init", "fixed", "--rot", 0, 0, 0, "--xyz", 0, 850, 0,
                         "--device", "cpu", "-q", "-o", out)  # fmt: skip
    assert code == 2 and err.count("\n") == 1, err
    assert "the starting pose (--rot/--xyz) puts the CT's centre 850 mm" in err, err
    assert "(the X-ray's source-to-detector distance 700 mm)" in err, err
    assert not out.exists()


def test_train_pose_refuses_a_nominal_pose_that_puts_the_ct_behind_the_source(tmp_path, recon):
    """`--set orientation=PA` with the default nominal pose (the AP frame's source side, +y)
    trained on DRRs of the CT drawn upside down through the source."""
    from recon.pipelines.common.settings import resolve_config
    from recon.pipelines.xray import pose_task

    out = tmp_path / "run"
    code, _, err = recon("train", "pose", "--set", "orientation=PA", "--epochs", 1, "-o", out)
    assert code == 2 and err.count("\n") == 1, err
    assert "nominal_xyz_mm [0.0, 850.0, 0.0] puts the CT behind the source" in err, err
    assert "--set nominal_xyz_mm=[0,-850,0]" in err and not out.exists()
    for orientation, y in (("PA", -850.0), ("AP", 850.0)):
        cfg = resolve_config(
            pose_task.TASK, None, {"orientation": orientation, "nominal_xyz_mm": [0.0, y, 0.0]}
        )
        pose_task.check(cfg)
    # the nominal pose in front, but a range that draws poses past it: 5000 trained on
    # upside-down DRRs without a word (synth xray's --xyz-range stops at 800 for this)
    for range_mm, what in ((5000, "the CT behind the source"), (801, "the source 49 mm from")):
        small = ("--set", "size=32", "--set", "samples_per_epoch=16", "--set", "val_samples=4")
        args = ("--set", f"xyz_range_mm={range_mm}", *small, "--epochs", 1, "--device", "cpu")
        code, _, err = recon("train", "pose", *args, "-o", out)
        assert code == 2 and err.count("\n") == 1 and what in err, err
        assert "xyz_range_mm may be at most 800" in err and not out.exists()
    for orientation, y in (("PA", -850.0), ("AP", 850.0)):
        cfg = resolve_config(
            pose_task.TASK,
            None,
            {"orientation": orientation, "nominal_xyz_mm": [0.0, y, 0.0], "xyz_range_mm": 800}
            | {"sdd": 2100.0},
        )
        pose_task.check(cfg)
    # a range that draws poses whose CT centre lies past the detector (1020 mm from the source)
    args = ("--set", "xyz_range_mm=200", *small, "--epochs", 1, "--device", "cpu")
    code, _, err = recon("train", "pose", *args, "-o", out)
    assert code == 2 and err.count("\n") == 1, err
    assert "setting sdd 1020 puts the detector no farther" in err and "exceed 1087" in err, err
    assert "xyz_range_mm be at most 148.2" in err, err
    assert not out.exists()


def test_synth_xray_names_what_each_drawn_pose_shows(tmp_path, recon):
    """synth xray wrote L\\F and View Position AP whatever pose it drew: with --rot-range 180
    a view from the side or from behind was labelled the nominal AP view. Each file now says
    what make-drr says for the same pose, and truth.json lists it."""
    import pydicom

    ct = small_ct(tmp_path / "ct.nii.gz")
    args = ["--count", 8, "--size", 16, "--sdd", 1000, "--field", 120, "--rot-range", 180]
    code, _, err = recon("synth", "xray", "-v", ct, *args, "--xyz-range", 5, "--seed", 3,
                         "-o", tmp_path / "x", "-q")  # fmt: skip
    assert code == 0, err
    code, out, err = recon("make-drr", "-v", ct, "--pose", tmp_path / "x" / "truth.json",
                           "--format", "dcm", "--size", 16, "--delx", 7.5, "--sdd", 1000,
                           "--json", "-q", "-o", tmp_path / "d")  # fmt: skip
    assert code == 0, err
    truth = json.loads((tmp_path / "x" / "truth.json").read_text())["xrays"]
    seen = set()
    for row in json.loads(out)["files"]:
        ds = pydicom.dcmread(tmp_path / "x" / row["xray"])
        said = ("\\".join(ds.PatientOrientation), ds.get("ViewPosition"))
        assert said == (row["patient_orientation"], row["view_position"]), row["xray"]
        listed = truth[row["xray"]]
        assert (listed["patient_orientation"], listed["view_position"]) == said
        seen.add(said)
    assert len(seen) >= 3, seen  # the nominal view and others
