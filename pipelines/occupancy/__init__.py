"""Image -> voxels: Pix3D-layout data sets (pix3d.json, img/, voxel .mat), image + STL parts sets,
object image preparation, `.mat` reading and conversion, data-set checks, the `voxel` (ResNet18)
and `parts` (ResNet50, Canny edges) training tasks, and prediction to voxels and meshes.

Entry points: `checks.check_voxel`, `checks.check_parts`, `predict.predict_images`,
`matfiles.read_voxel_mat`. Both layouts are in the README's "Image -> voxel" section.
"""
