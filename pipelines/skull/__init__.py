"""Skull -> face: procedural heads (parametric skull, soft tissue from tissue-depth tables),
radiographs rendered with diffdrr or face photos, the `skull` training task (ResNet encoder,
skull and face voxel heads), prediction to PLY meshes and renders, and scoring in millimetres.

Entry points: `synth.synth_skull_dataset`, `data.check_skull`, `predict.predict_skull`,
`score.score_folder`, `demo.demo_step`. The data layout is described in `synth.py`.
"""
