"""DICOM X-rays as some vendors write them, through the one DICOM reader: an 8-bit VOI LUT (one
entry per word, or two), a rescale with half its pair, a broken tag the command does not use,
a LUT or window that cannot be applied, a PixelSpacing that is the imager's rounded, and a
code string in lower case. Each was read wrong, or refused, or refused in words that called a
real X-ray no DICOM X-ray."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from dicom_files import write_dx
from test_register_inputs import write_dicom

from recon.pipelines.common.dicom import read_dicom_image
from recon.pipelines.common.dicom_spacing import pixel_spacing
from recon.pipelines.common.errors import BadInput
from recon.pipelines.corset.spine import load_spine_xray
from recon.pipelines.xray.xray import read_xray

STORED = (np.arange(48 * 40).reshape(48, 40) * 7 % 4096).astype(np.uint16)  # 12 bits, all used
RAW_FACTOR = ("9.87", "1,10")  # a decimal comma, written over a placeholder (with_raw)
BROKEN_FACTOR = {"EstimatedRadiographicMagnificationFactor": RAW_FACTOR[0]}
SPACING = {"DistanceSourceToDetector": "1000", "ImagerPixelSpacing": ["0.2", "0.2"]}


def with_raw(path: Path, placeholder: str, raw: str) -> Path:
    """The DICOM file with a tag's value, written as placeholder, replaced by raw bytes of the
    same length: a decimal string pydicom will not write ("10,5")."""
    data = path.read_bytes()
    assert data.count(placeholder.encode()) == 1 and len(placeholder) == len(raw)
    path.write_bytes(data.replace(placeholder.encode(), raw.encode()))
    return path


def lut_sequence(table: np.ndarray, first: int, bits: int, form: str):
    """A one-item LUT sequence (VOI or Modality): LUT Descriptor [entries, first, bits] and the
    table as LUT Data, one entry per 16-bit word (OW or US) or two (8-bit entries, the first in
    the low byte)."""
    from pydicom.dataelem import DataElement
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    table = np.asarray(table, dtype=np.int64)
    if form.endswith("packed"):
        pairs = np.append(table, 0) if len(table) % 2 else table
        words = pairs[0::2] | pairs[1::2] << 8
    else:
        words = table
    item = Dataset()
    item["LUTDescriptor"] = DataElement(0x00283002, "US", [len(table), first, bits])
    if form.startswith("OW"):
        item["LUTData"] = DataElement(0x00283006, "OW", words.astype("<u2").tobytes())
    else:
        item["LUTData"] = DataElement(0x00283006, "US", words.tolist())
    return Sequence([item])


@pytest.mark.parametrize("form", ["OW words", "US words", "OW packed", "US packed"])
def test_an_8_bit_voi_lut_maps_each_stored_value_to_its_entry(tmp_path, form):
    """pydicom's lookup indexed the 8-bit table with 8-bit indices, so stored 256 read as entry
    0 and 1000 as entry 232 (the words forms), and it could not unpack the packed form ("not a
    DICOM X-ray (unpack_from requires a buffer ...)")."""
    first, entries = 300, 3001  # stored values below 300 and above 3300 clip to the ends
    table = np.arange(entries) * 37 % 256  # no order, so that any wrong index shows
    sequence = lut_sequence(table, first, 8, form)
    path = write_dx(tmp_path / "voi8.dcm", STORED, bits_stored=12, VOILUTSequence=sequence)
    truth = table[np.clip(STORED.astype(np.int64), first, first + entries - 1) - first]
    shown = read_dicom_image(path, voi=True, invert=False).pixels
    assert np.array_equal(shown, truth)
    assert np.array_equal(read_dicom_image(path, voi=False).pixels, STORED)  # register's view


def test_embed_spine_reads_a_film_through_an_8_bit_voi_lut_as_through_the_16_bit_one(
    recon, tmp_path
):
    """The same display curve as 8-bit entries (packed, as PS3.3 C.11.2.1.1 stores them) and as
    16-bit ones (x 257): the same Cobb angle and embedding, and the film's own angle. Before,
    the 8-bit film read as noise: "no spine found" (exit 1)."""
    from recon.pipelines.corset.spine_xray import synth_spine_xray

    film = synth_spine_xray(25.0, rows=192, seed=4)
    stored = film.image >> 4  # 12 bits
    curve = np.round(255 * (np.arange(4096) / 4095) ** 0.7).astype(np.int64)
    results = {}
    for name, table, bits in (("8-bit", curve, 8), ("16-bit", curve * 257, 16)):
        form = "OW packed" if bits == 8 else "OW words"
        path = write_dx(
            tmp_path / f"{name}.dcm",
            stored,
            bits_stored=12,
            ImagerPixelSpacing=[film.spacing_mm] * 2,
            VOILUTSequence=lut_sequence(table, 0, bits, form),
        )
        rc, _, err = recon("embed-spine", path, "-o", tmp_path / f"{name}.json")
        assert rc == 0, err
        results[name] = json.loads((tmp_path / f"{name}.json").read_text())
    eight, sixteen = results["8-bit"], results["16-bit"]
    assert abs(sixteen["cobb_deg"] - film.cobb_deg) < 3.0
    assert eight["cobb_deg"] == pytest.approx(sixteen["cobb_deg"], abs=1e-6)
    assert eight["embedding"] == pytest.approx(sixteen["embedding"], abs=1e-6)


@pytest.mark.parametrize(
    ("tags", "missing"),
    [
        ({"RescaleSlope": "-1"}, "without RescaleIntercept (0028,1052)"),
        ({"RescaleIntercept": "-1024"}, "without RescaleSlope (0028,1053)"),
    ],
)
def test_a_rescale_slope_without_its_intercept_is_refused(recon, tmp_path, tags, missing):
    """pydicom skips a rescale without both, while the beam's direction was still read from
    the slope: a slope of -1 alone read the film inverted (register's similarity -0.93,
    "mirrored"; embed-spine measured the inverted film, exit 0)."""
    path = write_dicom(tmp_path / "half.dcm", **tags)
    for read in (read_xray, load_spine_xray, read_dicom_image):
        with pytest.raises(BadInput, match=r"half\.dcm: ") as caught:
            read(path)
        assert missing in str(caught.value) and "(PS3.3 C.11.1)" in str(caught.value)
    rc, _, err = recon("embed-spine", path, "-o", tmp_path / "s.json")
    assert rc == 2 and err.count("\n") == 1 and missing in err, err
    # both, or neither: the rescale applies as before
    both = write_dicom(tmp_path / "both.dcm", RescaleSlope="-1", RescaleIntercept="4095")
    stored = read_dicom_image(write_dicom(tmp_path / "none.dcm"), invert=False).pixels
    assert np.array_equal(read_dicom_image(both, invert=False).pixels, 4095.0 - stored)


def test_an_unparseable_positioner_angle_only_stops_init_dicom(tmp_path):
    """An out-of-range distance was already left to --init dicom; an angle of "10,5" (a
    decimal comma) refused the film for every start."""
    from recon.pipelines.xray.register_inputs import dicom_pose

    path = write_dicom(tmp_path / "angle.dcm", PositionerPrimaryAngle="7.25")
    with_raw(path, "7.25", "10,5")
    xray = read_xray(path)  # --init fixed reads the film
    assert (xray.intrinsics.dely, xray.intrinsics.delx) == (8.0, 8.0)
    assert xray.positioner is None
    with pytest.raises(BadInput) as caught:
        dicom_pose(xray, "AP")
    line = str(caught.value)
    assert "PositionerPrimaryAngle (0018,1510) is not a number ('10,5')" in line
    assert "angle.dcm" in line and "--init dicom" in line and "use --init fixed" in line
    # a broken distance fallback likewise
    factor = write_dicom(tmp_path / "factor.dcm", DistanceSourceToPatient="", **BROKEN_FACTOR)
    factor = read_xray(with_raw(factor, *RAW_FACTOR))
    assert factor.positioner is None
    assert "EstimatedRadiographicMagnificationFactor (0018,1114)" in factor.positioner_problem


def test_a_broken_magnification_factor_is_read_only_where_it_scales_a_spacing(tmp_path):
    """ImagerPixelSpacing (register) and a GEOMETRY-calibrated PixelSpacing (embed-spine) need no
    factor; both refused the film for a factor of "1,10". A PixelSpacing alone still needs it
    at the detector plane, and is refused there naming it."""
    import pydicom

    broken = BROKEN_FACTOR
    imager = with_raw(write_dicom(tmp_path / "imager.dcm", **broken), *RAW_FACTOR)
    assert read_xray(imager).spacing_source == "ImagerPixelSpacing"
    assert (read_xray(imager).intrinsics.dely, read_xray(imager).intrinsics.delx) == (8.0, 8.0)
    calibrated = write_dx(
        tmp_path / "geometry.dcm",
        STORED,
        PixelSpacing=["0.15", "0.16"],
        PixelSpacingCalibrationType="GEOMETRY",
        **SPACING,
        **broken,
    )
    with_raw(calibrated, *RAW_FACTOR)
    spine = load_spine_xray(calibrated)
    assert spine.spacing_mm == pytest.approx((0.15, 0.16))
    assert pixel_spacing(pydicom.dcmread(calibrated), calibrated, "detector")[0] == (0.2, 0.2)
    alone = write_dx(tmp_path / "alone.dcm", STORED, PixelSpacing=["0.15", "0.16"], **broken)
    with_raw(alone, *RAW_FACTOR)
    with pytest.raises(BadInput, match=r"EstimatedRadiographicMagnificationFactor \(0018,1114\)"):
        pixel_spacing(pydicom.dcmread(alone), alone, "detector")


def short_voi_lut():
    """A VOI LUT whose descriptor says 4096 entries and whose data holds 100."""
    sequence = lut_sequence(np.arange(100), 0, 16, "US words")
    sequence[0].LUTDescriptor = [4096, 0, 16]
    return sequence


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        (
            {"ModalityLUTSequence": lut_sequence(np.arange(4096) // 2, 0, 20, "US words")},
            "the Modality LUT Sequence (0028,3000) gives 20-bit entries in its LUT Descriptor "
            "(0028,3002), not 8 to 16",
        ),
        (
            {"WindowCenter": "2048", "WindowWidth": "0"},
            "WindowWidth (0028,1051) is 0; a LINEAR window's width must be at least 1",
        ),
        (
            {"WindowCenter": "2048.5", "WindowWidth": "4096"},  # then "2048,5" (with_raw)
            "WindowCenter (0028,1050) is '2048,5', not a number",
        ),
        (
            {"VOILUTSequence": short_voi_lut()},
            "the VOI LUT Sequence (0028,3010)'s LUT Data (0028,3006) holds 100 16-bit words for "
            "4096 16-bit entries",
        ),
    ],
    ids=["modality LUT 20-bit", "window width 0", "window centre comma", "VOI LUT short"],
)
def test_a_lut_or_window_that_cannot_be_applied_names_its_tag(recon, tmp_path, tags, message):
    """They read "not a DICOM spine X-ray (data type 'uint12' not understood)", "(The (0028,1051)
    Window Width must be ...)" and "(unsupported operand type(s) for -=: 'str' and 'float')".
    The window is refused, not dropped: embed-spine reads the film as the file says to show it."""
    path = write_dx(tmp_path / "film.dcm", STORED, bits_stored=12, **SPACING, **tags)
    if "'2048,5'" in message:
        with_raw(path, "2048.5", "2048,5")
    rc, _, err = recon("embed-spine", path, "-o", tmp_path / "s.json")
    assert rc == 2 and err.strip().splitlines() == [f"error: {path}: {message}"], err
    assert not (tmp_path / "s.json").exists()


def test_a_pixel_spacing_rounded_from_the_imagers_is_not_a_calibration(tmp_path):
    """PixelSpacing 0.1389 beside ImagerPixelSpacing 0.13888889 (4 significant digits) was taken
    as calibrated at equality within 1e-6: 20% off with a magnification of 1.2. A PixelSpacing
    that differs by a magnification is still the calibrated one."""
    import pydicom

    def patient(spacing: str):
        path = write_dx(
            tmp_path / f"{spacing}.dcm",
            STORED,
            ImagerPixelSpacing=["0.13888889"] * 2,
            PixelSpacing=[spacing] * 2,
            EstimatedRadiographicMagnificationFactor="1.2",
        )
        return pixel_spacing(pydicom.dcmread(path), path, "patient")

    spacing, source = patient("0.1389")
    assert spacing == pytest.approx((0.13888889 / 1.2,) * 2, rel=1e-9)
    assert source.endswith("PixelSpacing equals it: not calibrated")
    assert patient("0.139")[0] == pytest.approx((0.13888889 / 1.2,) * 2, rel=1e-9)  # 3 digits
    assert patient("0.1157") == ((0.1157, 0.1157), "PixelSpacing")  # calibrated


def test_a_lower_case_photometric_interpretation_is_read_as_upper_case(tmp_path):
    """ "monochrome1" was refused as "not a grey-scale X-ray"; code strings are read in any
    case. With a window too, which pydicom applies only to upper-case MONOCHROME1/2."""
    window = {"WindowCenter": "2000", "WindowWidth": "3000"}
    upper = write_dx(tmp_path / "upper.dcm", STORED, bits_stored=12,
                     PhotometricInterpretation="MONOCHROME1", **SPACING, **window)  # fmt: skip
    with warnings.catch_warnings():  # pydicom warns as it writes the invalid code string
        warnings.simplefilter("ignore", UserWarning)
        lower = write_dx(tmp_path / "lower.dcm", STORED, bits_stored=12,
                         PhotometricInterpretation="monochrome1", **SPACING, **window)  # fmt: skip
    for voi in (False, True):
        one, two = read_dicom_image(upper, voi=voi), read_dicom_image(lower, voi=voi)
        assert two.photometric == "MONOCHROME1" and two.beam.invert
        assert np.array_equal(one.pixels, two.pixels)
    assert np.array_equal(read_xray(lower).image.numpy(), read_xray(upper).image.numpy())


def test_a_file_without_the_preamble_reads_as_the_same_film(recon, tmp_path):
    """Older writers and some archive exports leave out the 128-byte preamble and DICM, or the
    file meta altogether: both were "not a DICOM X-ray (no DICOM header)", and a bare data set
    in big-endian order was still not known as a DICOM."""
    import pydicom
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    from recon.pipelines.common.dicom import looks_like_dicom

    full = write_dx(tmp_path / "full.dcm", STORED, bits_stored=12, **SPACING)
    no_preamble = tmp_path / "no_preamble"  # no suffix: the content says what it is
    no_preamble.write_bytes(full.read_bytes()[132:])
    ds = pydicom.dcmread(full)
    del ds.file_meta
    bare_files = []
    # the default transfer syntax, and Explicit VR Big Endian (was not known as a DICOM)
    for name, little, implicit in (("bare", True, True), ("bare_big_endian", False, False)):
        stream = DicomBytesIO()
        stream.is_little_endian, stream.is_implicit_VR = little, implicit
        # Pixel Data's words are written as they are held: in the stream's byte order
        ds.PixelData = STORED.astype("<u2" if little else ">u2").tobytes()
        write_dataset(stream, ds)
        bare_files.append(tmp_path / name)  # no suffix: the content says what it is
        bare_files[-1].write_bytes(stream.getvalue())
    reference = read_dicom_image(full)
    for path in (no_preamble, *bare_files):
        assert looks_like_dicom(path)
        image = read_dicom_image(path)
        assert np.array_equal(image.pixels, reference.pixels)
        assert pixel_spacing(image.dataset, path, "detector")[0] == (0.2, 0.2)
    (tmp_path / "junk.dcm").write_bytes(b"\x08\x00" + b"\xff" * 200)  # a start, then junk
    code, _, err = recon("embed-spine", tmp_path / "junk.dcm", "-o", tmp_path / "j.json")
    assert code == 2 and err.startswith(f"error: {tmp_path / 'junk.dcm'}: "), err
    assert len(err.splitlines()) == 1 and not (tmp_path / "j.json").exists()


def test_an_enhanced_xa_named_only_in_the_file_meta_is_refused(tmp_path):
    """A writer that keeps the SOP Class UID in the file meta alone: an Enhanced XA file was
    read as a plain film, its per-frame geometry unread."""
    path = write_dx(tmp_path / "e.dcm", STORED, bits_stored=12, drop=("SOPClassUID",), **SPACING)
    import pydicom

    ds = pydicom.dcmread(path)
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.12.1.1"
    ds.save_as(path)
    with pytest.raises(BadInput, match=r"e\.dcm: an Enhanced XA image keeps its geometry"):
        read_dicom_image(path)


def test_a_signed_padding_value_written_as_us_marks_the_padding(tmp_path):
    """Pixel Padding Value's VR is US or SS as Pixel Representation says; -2000 written as US
    (63536) in a signed file matched no pixel, and the padded border was read as image."""
    from pydicom.dataelem import DataElement

    signed = (STORED.astype(np.int16) - 1000).copy()
    signed[:, :6] = -2000  # the padded border
    tags = {"PixelRepresentation": 1, **SPACING}
    as_ss = write_dx(tmp_path / "ss.dcm", signed, bits_stored=16, PixelPaddingValue=-2000, **tags)
    as_us = write_dx(tmp_path / "us.dcm", signed, bits_stored=16, **tags)
    import pydicom

    ds = pydicom.dcmread(as_us)
    ds["PixelPaddingValue"] = DataElement(0x00280120, "US", 63536)
    ds.save_as(as_us)
    assert pydicom.dcmread(as_us).PixelPaddingValue == 63536  # as the file says
    for path in (as_ss, as_us):
        image = read_dicom_image(path)
        assert image.region is not None and not image.region[:, :6].any()
        assert image.region[:, 6:].all(), path


@pytest.mark.parametrize(
    ("bits", "form"), [(12, "US words"), (12, "OW words"), (8, "OW packed"), (16, "US words")]
)
def test_a_modality_lut_is_looked_up_as_stored(tmp_path, bits, form):
    """12-bit entries (which real files carry, though PS3.3 C.11.1.1.1 names 8 and 16) and 8-bit
    ones packed two to a word were refused; each stored value now maps to its entry, and values
    beyond the table to its first or last entry."""
    first, entries = 100, 3000  # stored values run 0-4095: below and beyond the table
    table = (np.arange(entries) * 7 + 11) % (2**bits)  # no value its own index
    path = write_dx(tmp_path / "film.dcm", STORED, bits_stored=12, **SPACING,
                    ModalityLUTSequence=lut_sequence(table, first, bits, form))  # fmt: skip
    read = read_dicom_image(path, invert=False).pixels
    expected = table[np.clip(STORED.astype(np.int64) - first, 0, entries - 1)]
    assert np.array_equal(read, expected)


def test_a_signed_files_modality_lut_start_written_as_us_is_read_signed(tmp_path):
    """The LUT Descriptor's first mapped value is US or SS as Pixel Representation says: -1000
    written as US (64536) mapped every stored value of a signed film below the table's start."""
    signed = STORED.astype(np.int16) - 1000  # -1000 to 3095
    table = (np.arange(4096) * 7 + 11) % 4096
    path = write_dx(tmp_path / "film.dcm", signed, bits_stored=16, PixelRepresentation=1,
                    ModalityLUTSequence=lut_sequence(table, 64536, 16, "US words"),
                    **SPACING)  # fmt: skip
    read = read_dicom_image(path, invert=False).pixels
    assert np.array_equal(read, table[signed.astype(np.int64) + 1000])
