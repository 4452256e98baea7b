"""What every pipeline uses: errors, atomic outputs and run records, image, mesh and DICOM io,
devices, metrics, batch shards, the Lightning training engine (settings, sampling, checkpoints,
run folder, curves) and task registry, and the demo.

Entry points: `engine.fit`, `tasks.load_task`, `demo.STEPS`; file formats are in the README's
"Files" section.
"""
