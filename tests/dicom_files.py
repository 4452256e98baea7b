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
