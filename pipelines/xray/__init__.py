"""X-ray <-> CT: CT volumes, X-ray files (DICOM, PNG) and their detector orientation, DRRs on
diffdrr, poses, 2D/3D registration with a windowed gradient NCC, synthetic X-rays and paired data
sets, augmentation, and the `drr` (pix2pix X-ray -> DRR) and `pose` training tasks.
Entry points: `registration_run.run_register`, `make_drr.run_make_drr`, `augment.augment_pairs`.
Conventions: poses in `pose.py`, column direction in `orientation.py`, QC figure `figures.py`.
Other pipelines import only the names listed here (a film's orientation, without torch).
"""

from recon.pipelines.xray.orientation import dicom_stored_orientation, image_frame

__all__ = ["dicom_stored_orientation", "image_frame"]
