"""The work behind every `recon` command, one sub-package per pipeline.

shapes (mesh <-> views, voxels), corset, occupancy (image -> voxels), xray (CT <-> X-ray) and
common (errors, outputs, io, devices, metrics, the training engine, the demo). A domain package
uses common and reaches another domain only through that package's own public names.
"""
