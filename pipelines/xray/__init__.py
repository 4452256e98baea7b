"""X-ray <-> CT: CT volumes, X-ray files (DICOM, PNG), DRRs on diffdrr, poses, 2D/3D registration
with a windowed gradient NCC, synthetic X-rays and paired data sets, augmentation, and the `drr`
(pix2pix X-ray -> DRR) and `pose` (patient-specific regressor) training tasks.

Entry points: `registration_run.run_register`, `make_drr.run_make_drr`, `augment.augment_pairs`.
The pose convention is in `pose.py`; file layouts are in the README's "X-ray <-> CT" section.
"""
