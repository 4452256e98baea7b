"""Which way an X-ray's values run and whether they are linear in the beam: Pixel Intensity
Relationship (LIN/LOG) and its Sign, read by register and embed-spine, on DX files written by
pydicom here (not by `recon synth`): one DRR of the bundled CT stored the ways X-ray systems
store it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from dicom_files import ap_line_integrals, film_tags, write_dx, write_truth

from recon.pipelines.common.dicom import read_dicom_image
from recon.pipelines.common.dicom_values import beam_relation
from recon.pipelines.common.errors import BadInput
from recon.pipelines.xray.xray import preprocess, read_xray

# name: (pixels made from the line integrals, photometric, relationship, sign)
ENCODINGS = {
    # raw detector values, proportional to the beam: dense is dark (For Processing)
    "lin_raw": ("intensity", "MONOCHROME2", "LIN", 1),
    # the same values shown bone-white by MONOCHROME1
    "lin_mono1": ("intensity", "MONOCHROME1", "LIN", 1),
    # log-processed, shown by MONOCHROME1: the usual CR/DX presentation image
    "log_mono1": ("log_intensity", "MONOCHROME1", "LOG", 1),
    # line integrals, bone-white (what make-drr writes)
    "log_mono2": ("line_integral", "MONOCHROME2", "LOG", -1),
    # no relationship tags: MONOCHROME1 read as raw intensities (xvr's rule)
    "untagged_mono1": ("intensity", "MONOCHROME1", None, None),
    # XA and RF carry the relationship but no sign: LIN and LOG both rise with the beam
    "xa_lin": ("intensity", "MONOCHROME2", "LIN", None),
    "xa_log": ("log_intensity", "MONOCHROME2", "LOG", None),
    # a DX without its (required) sign: the photometric rule, as before
    "dx_log_unsigned": ("line_integral", "MONOCHROME2", "LOG", None),
}


@pytest.fixture(scope="module")
def films(tmp_path_factory):
    """The line integrals (H, W) in [0, 1] and one DX file per encoding, with the truth."""
    folder = tmp_path_factory.mktemp("encodings")
    line = ap_line_integrals(64, 56, 6.0)
    values = {
        "intensity": 4095 * np.exp(-3 * line),
        "log_intensity": 4095 * (1 - line),
        "line_integral": 4095 * line,
    }
    files = {}
    for name, (kind, photometric, relationship, sign) in ENCODINGS.items():
        tags = {"PhotometricInterpretation": photometric}
        if name.startswith("xa_"):
            tags |= {"Modality": "XA"}
        if relationship is not None:
            tags |= {"PixelIntensityRelationship": relationship}
        if sign is not None:
            tags |= {"PixelIntensityRelationshipSign": sign}
        pixels = np.round(values[kind]).astype(np.uint16)
        files[name] = write_dx(folder / f"{name}.dcm", pixels, **film_tags(6.0), **tags)
    return line, files, write_truth(folder / "truth.json")


def test_every_encoding_is_read_bright_dense_and_linearised_only_when_linear(films):
    """After preprocess(--linearize auto) each file correlates with the true line integrals:
    LOG files as they are (r > 0.999), LIN files through -log (r > 0.95; the -log of min-max
    scaled intensities, as xvr takes it). Before the tags were read, the raw MONOCHROME2 file
    came out inverted (r -0.96) and the LOG MONOCHROME1 file was put through -log (r 0.90);
    before the XA rule (no sign: LIN and LOG rise with the beam) the XA files came out
    inverted (r -0.86 and -1.00)."""
    line, files, _ = films
    correlation = {}
    for name, path in files.items():
        image, _ = preprocess(read_xray(path), 0, "auto")
        correlation[name] = float(np.corrcoef(image[0, 0].numpy().ravel(), line.ravel())[0, 1])
    for name in ("log_mono1", "log_mono2", "xa_log", "dx_log_unsigned"):
        assert correlation[name] > 0.999, correlation
    for name in ("lin_raw", "lin_mono1", "untagged_mono1", "xa_lin"):
        assert correlation[name] > 0.95, correlation
    raw, shown = read_xray(files["lin_raw"]), read_xray(files["lin_mono1"])
    assert torch.equal(raw.image, shown.image)  # the sign, not the display, says which is dense
    assert "sign +1" in raw.intensity and "linear in the beam" in raw.intensity


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lin_raw", "log_mono1"])
def test_raw_and_log_films_register_to_the_truth(films, tmp_path, recon, name):
    """Registered from the DICOM positioner angles (17.7 mm mTRE): measured 0.32 mm (raw) and
    0.12 mm (LOG MONOCHROME1); before, the raw film registered to 126 mm (similarity 0.23,
    exit 1) and the LOG one to 0.61 mm."""
    _, files, truth = films
    coarse = ["--ct-spacing", 4, "--heights", "32,64", "--iterations", "150,60", "--threads", 1]
    code, out, err = recon(
        "register", files[name], "-o", tmp_path / "reg", "--init", "dicom", "--truth", truth,
        *coarse, "--device", "cpu", "--json",
    )  # fmt: skip
    assert code == 0, err
    row = json.loads(out)["results"][0]
    assert row["init_mtre_mm"] > 10 and row["final_mtre_mm"] < 0.5, row
    assert "Pixel Intensity Relationship" in row["intensity"]


def _dataset(**tags):
    from pydicom.dataset import Dataset

    ds = Dataset()
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    return ds


@pytest.mark.parametrize(
    "tags, photometric, invert, linear",
    [
        ({}, "MONOCHROME1", True, None),
        ({}, "MONOCHROME2", False, None),
        ({"PixelIntensityRelationship": "LIN", "PixelIntensityRelationshipSign": 1},
         "MONOCHROME2", True, True),
        ({"PixelIntensityRelationship": "LOG", "PixelIntensityRelationshipSign": -1},
         "MONOCHROME1", False, False),
        ({"PixelIntensityRelationship": "DISP"}, "MONOCHROME1", True, False),
        # a negative Rescale Slope turns the stored order the sign describes
        ({"PixelIntensityRelationshipSign": -1, "RescaleSlope": "-1"}, "MONOCHROME2", True, None),
        # optical density (a CR film's Rescale Type) is log10 of the transmission already: it
        # was linearised again by the MONOCHROME1 rule
        ({"RescaleType": "OD"}, "MONOCHROME1", True, False),
        ({"RescaleType": "OD", "PixelIntensityRelationship": "LIN"}, "MONOCHROME1", True, True),
    ],
)  # fmt: skip
def test_beam_relation(tags, photometric, invert, linear):
    beam = beam_relation(_dataset(**tags), "x.dcm", photometric)
    assert (beam.invert, beam.linear) == (invert, linear)


@pytest.mark.parametrize("sign", [0, 2])
def test_a_sign_other_than_plus_or_minus_one_is_refused(tmp_path, recon, sign):
    path = write_dx(
        tmp_path / "x.dcm",
        np.arange(48 * 40, dtype=np.uint16).reshape(48, 40),
        DistanceSourceToDetector="1000",
        ImagerPixelSpacing=["0.2", "0.2"],
        PixelIntensityRelationshipSign=sign,
    )
    with pytest.raises(BadInput, match=r"Sign \(0028,1041\) is"):
        read_dicom_image(path)
    for command, out in (("register", "reg"), ("embed-spine", "cobb.json")):
        code, _, err = recon(command, path, "-o", tmp_path / out)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and "+1 or -1" in lines[0], err
        assert not (tmp_path / out).exists()


def test_embed_spine_reads_a_raw_film_bone_white(tmp_path):
    """A MONOCHROME2 film whose sign says lower values are denser (raw detector values) is the
    same image for embed-spine as the film stored bone-white."""
    from recon.pipelines.corset.spine import load_spine_xray

    stored = (np.arange(48 * 40).reshape(48, 40) * 7 % 3000 + 100).astype(np.uint16)
    geometry = {"DistanceSourceToDetector": "1000", "ImagerPixelSpacing": ["0.2", "0.2"]}
    raw = write_dx(
        tmp_path / "raw.dcm",
        stored,
        PixelIntensityRelationship="LIN",
        PixelIntensityRelationshipSign=1,
        **geometry,
    )
    white = write_dx(tmp_path / "white.dcm", stored.max() + stored.min() - stored, **geometry)
    assert np.abs(load_spine_xray(raw).image - load_spine_xray(white).image).max() < 1e-3


def test_recon_writers_say_what_their_values_are(tmp_path):
    """make-drr DICOMs hold line integrals (LOG, sign -1), synth xray ones transmitted counts
    (LIN, sign +1); both read back as they were meant."""
    from recon.pipelines.xray.drr import Intrinsics
    from recon.pipelines.xray.xray import linearizes, write_xray_dicom

    pixels = (np.arange(40 * 30).reshape(40, 30) % 4000).astype(np.uint16)
    detector = Intrinsics(sdd=1000.0, height=40, width=30, delx=0.5, dely=0.5)
    write_xray_dicom(tmp_path / "drr.dcm", pixels, detector, relationship=("LOG", -1))
    write_xray_dicom(tmp_path / "raw.dcm", pixels, detector, "MONOCHROME1", relationship=("LIN", 1))
    drr, raw = read_xray(tmp_path / "drr.dcm"), read_xray(tmp_path / "raw.dcm")
    assert not linearizes(drr, "auto") and linearizes(raw, "auto")
    assert torch.allclose(drr.image, 1 - raw.image, atol=1e-6)


def _modality_lut(ds, table: np.ndarray) -> None:
    """Give ds a Modality LUT Sequence mapping stored value v to table[v]."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    item = Dataset()
    item.LUTDescriptor = [len(table), 0, 16]
    item.ModalityLUTType = "US"
    item.add_new(0x00283006, "US", [int(v) for v in table])  # LUT Data
    ds.ModalityLUTSequence = Sequence([item])
    for keyword in ("RescaleSlope", "RescaleIntercept"):
        if keyword in ds:
            delattr(ds, keyword)


def test_modality_luts_of_x_ray_files(films, tmp_path):
    """An XA LOG file's Modality LUT maps the log values back to linear intensity and is no
    part of display (PS3.3 C.8.7.1.1.2): the values are read as stored. The sign describes the
    values stored in Pixel Data, so a Modality LUT that runs backwards turns its order.
    Both read as the file without a LUT."""
    import pydicom

    line, files, _ = films
    log = pydicom.dcmread(files["xa_log"])
    _modality_lut(log, np.round(np.exp(np.arange(4096) / 4095 * 8)).clip(0, 65535))
    log.save_as(tmp_path / "xa_log_lut.dcm")
    raw = pydicom.dcmread(files["lin_raw"])
    _modality_lut(raw, 4095 - np.arange(4096))  # stored v -> 4095 - v
    raw.PixelData = (4095 - raw.pixel_array).astype(np.uint16).tobytes()  # the same values
    raw.PixelIntensityRelationshipSign = -1  # of the values stored in Pixel Data (PS3.3)
    raw.save_as(tmp_path / "lin_backwards.dcm")
    xa = pydicom.dcmread(files["xa_lin"])  # a LUT rising over the values used, 0 beyond them
    table = np.arange(4096)
    table[int(xa.pixel_array.max()) + 1 :] = 0
    _modality_lut(xa, table)
    xa.save_as(tmp_path / "xa_lut_tail.dcm")
    expected = {
        "xa_log_lut.dcm": files["xa_log"],
        "lin_backwards.dcm": files["lin_raw"],
        "xa_lut_tail.dcm": files["xa_lin"],
    }
    for name, same in expected.items():
        xray, reference = read_xray(tmp_path / name), read_xray(same)
        assert torch.allclose(xray.image, reference.image, atol=1e-6), name
    assert "Modality LUT not applied" in read_xray(tmp_path / "xa_log_lut.dcm").intensity
