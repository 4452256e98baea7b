"""Corset design: torso photos + a spine X-ray -> a spine-conditioned pix2pix that predicts 8 depth
views of the brace -> back-projection to an STL. Holds procedural patients, the spine embedding
(`recon embed-spine`), the offset-torso prior views, the `corset` training task and prediction.

Entry points: `patients.synth_corset_dataset`, `spine.measure_spine`, `predict.predict_corset`.
The patient folder layout is in the README's "Corset" section.
"""
