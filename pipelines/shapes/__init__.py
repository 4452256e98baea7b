"""Meshes to depth views and back: ray-cast projection at ring + cap views, back-projection
with MLS smoothing and screened Poisson, voxelisation, analytic solids, test meshes, shading.

Entry points: `project_mesh` / `write_projection` (`recon project`), `reconstruct`
(`recon backproject`), `voxelize_file`, `grid_to_mesh`. The views.json layout is in the README's
"Files" section. Other pipelines import only the names listed here.
"""

from recon.pipelines.shapes.backprojection import (
    SurfaceOptions,
    check_views_agree,
    lift_views,
    load_depth_views,
    reconstruct,
)
from recon.pipelines.shapes.meshes import make_shape, spine_curve, torso_tube
from recon.pipelines.shapes.projection import (
    DEPTH_UNIT,
    DISTANCE,
    EXTENT,
    Camera,
    Projection,
    cast_depths,
    encode_depth,
    normalising_transform,
    project_mesh,
    read_views,
    ring_cameras,
    write_projection,
)
from recon.pipelines.shapes.render import render_mesh
from recon.pipelines.shapes.shading import Renderer, mask_bbox, random_view
from recon.pipelines.shapes.solids import Box, Cylinder, Solid, occupancy, solid_mesh
from recon.pipelines.shapes.voxelize import grid_to_mesh, max_pool, voxelize_file

__all__ = [
    "DEPTH_UNIT",
    "DISTANCE",
    "EXTENT",
    "Box",
    "Camera",
    "Cylinder",
    "Projection",
    "Renderer",
    "Solid",
    "SurfaceOptions",
    "cast_depths",
    "check_views_agree",
    "encode_depth",
    "grid_to_mesh",
    "lift_views",
    "load_depth_views",
    "make_shape",
    "mask_bbox",
    "max_pool",
    "normalising_transform",
    "occupancy",
    "project_mesh",
    "random_view",
    "read_views",
    "reconstruct",
    "render_mesh",
    "ring_cameras",
    "solid_mesh",
    "spine_curve",
    "torso_tube",
    "voxelize_file",
    "write_projection",
]
