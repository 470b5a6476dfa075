"""``build_mesh``: the one call the engine makes for every mesh, from a quick preview to the final textured asset.

    build_mesh(sdf_fn, color_fn, resolution, *, device, to_world=(radius, centre), remove_floaters=True,
               floater_fraction=0.02, remove_cavities=False, decimate_faces=0, vertex_colors=True, texture_size=0,
               block_res=8, bounds=None, lipschitz=1.5, eval_batch=None) -> MeshData

- ``sdf_fn(points (M, 3)) -> (M,)`` and ``color_fn(points, normals, view_dirs) -> (M, 3)`` take normalised
  coordinates (the bounding sphere is the unit sphere); see ``fields.py``. ``color_fn`` may be None when neither
  vertex colours nor a texture is asked for.
- ``resolution``: cells across the sphere's diameter (128-256 for previews, 512-1024 for a good mesh, 2048 for
  the finest, as Neuralangelo counts them).
- ``floater_fraction``: with ``remove_floaters``, pieces with fewer faces than this share of the largest piece's
  are dropped (1.0 keeps only the largest piece).
- ``remove_cavities``: closed pieces enclosing negative volume (bubbles inside a solid) are dropped; for objects,
  never for inside-out (indoor) scenes, whose room is such a piece.
- ``to_world = (scale, offset)`` maps the result to the input's world frame: ``x_world = x_norm * scale + offset``
  (scale = sphere radius, offset = sphere centre), so meshes land in place.
- A texture whose atlas cannot be made raises ``atlas.AtlasError``; the caller may ask again without one.
- Steps, in order: block-wise marching cubes with welding (``extract.py``), degenerate faces and floaters removed
  over the whole mesh (``cleanup.py``), decimation to ``decimate_faces`` if > 0 (``simplify.py``; huge meshes
  are first clustered on the device, ``clustering.py``), vertex colours
  seen head-on along the SDF normal (``colors.py``), and, if ``texture_size`` > 0, a UV atlas (``atlas.py``) with
  the colour field baked into a ``texture_size``^2 PNG (``texture.py``). The native tools (edge collapse, atlas)
  run in child processes (``child_process.py``) so that the server keeps answering meanwhile. Colours are
  computed after decimation, at the vertices that remain, so they stay exact.
- A preview is ``build_mesh(..., resolution=128..256)``; the final asset adds ``decimate_faces`` and
  ``texture_size``. Files: ``export.write_ply`` / ``export.write_glb`` take the returned ``MeshData``.
"""
from __future__ import annotations

import math
import time
from typing import Callable, Sequence

import numpy as np
import torch

from ...shared.mesh_data import MeshData
from .cleanup import remove_cavities as remove_cavities_of, remove_degenerate_faces, remove_small_components
from .colors import surface_normals, vertex_colors as colors_at
from .extract import DEFAULT_BLOCK_RES, SPLIT_FROM_RESOLUTION, extract_surface_on
from .fields import ColorFn, SdfFn, default_batch

DEFAULT_FLOATER_FRACTION = 0.02
StepReport = Callable[[str, float, int], None]


def build_mesh(sdf_fn: SdfFn, color_fn: ColorFn | None, resolution: int, *, device: torch.device | str,
               to_world: tuple[float, Sequence[float]] = (1.0, (0.0, 0.0, 0.0)),
               remove_floaters: bool = True, floater_fraction: float = DEFAULT_FLOATER_FRACTION,
               remove_cavities: bool = False, decimate_faces: int = 0, vertex_colors: bool = True,
               texture_size: int = 0,
               block_res: int = DEFAULT_BLOCK_RES, bounds: tuple[Sequence[float], Sequence[float]] | None = None,
               lipschitz: float | None = 1.5, eval_batch: int | None = None,
               on_step: StepReport | None = None,
               more_devices: Sequence[tuple[torch.device | str, SdfFn]] = ()) -> MeshData:
    """A mesh of the SDF's zero set inside the unit sphere, in world coordinates, with the asked-for extras.

    ``more_devices``: other GPUs, each with the SDF of a copy of the network there, that share the surface's
    blocks from ``SPLIT_FROM_RESOLUTION`` on (the rest of the steps run on ``device``).
    ``on_step(name, seconds, faces)``, when given, is called as each step ends (surface, cleanup, decimation,
    colours, atlas, bake) with the mesh's face count then, so a slow asset says where its time goes while it goes.
    """
    stage = _Stages(device, on_step)
    scale, offset = _world_transform(to_world)
    if color_fn is None and (vertex_colors or texture_size):
        raise ValueError("vertex_colors and texture_size need a color_fn; pass vertex_colors=False, texture_size=0 "
                         "for a mesh without colour")
    if texture_size and (not isinstance(texture_size, int) or texture_size < 8):
        raise ValueError(f"texture_size must be 0 (no texture) or an integer of at least 8, got {texture_size!r}")
    device = torch.device(device)
    batch = eval_batch or default_batch(device)
    parts = [(device, sdf_fn), *(more_devices if resolution >= SPLIT_FROM_RESOLUTION else ())]
    surface = extract_surface_on(parts, resolution, block_res=block_res, bounds=bounds, lipschitz=lipschitz,
                                 eval_batch=batch)
    stage("surface", surface.faces)
    vertices, faces = remove_degenerate_faces(surface.vertices, surface.faces)
    if remove_floaters:
        vertices, faces = remove_small_components(vertices, faces, floater_fraction)
    if remove_cavities:
        vertices, faces = remove_cavities_of(vertices, faces)
    stage("cleanup", faces)
    if decimate_faces and faces.shape[0] > decimate_faces:
        from .simplify import reduce_to_budget

        vertices, faces = reduce_to_budget(vertices, faces, decimate_faces)
        stage("decimation", faces)
    colors = uv = png = None
    if faces.shape[0] and color_fn is not None:
        # Half a cell: at resolution 2048 that is the finest hash-grid cell, the step the normals were trained with.
        normals = surface_normals(sdf_fn, vertices, faces, step=1.0 / resolution, batch=batch)
        if vertex_colors:
            colors = colors_at(color_fn, vertices, normals, batch).cpu().numpy()
        stage("colours", faces)
        if texture_size:
            from .atlas import uv_atlas
            from .texture import bake_texture

            uv = uv_atlas(vertices.cpu().numpy(), faces.cpu().numpy(), texture_size)
            stage("atlas", faces)
            png = bake_texture(vertices, faces, normals, torch.from_numpy(uv), color_fn, texture_size, batch)
            stage("bake", faces)
    world = (vertices.double() * scale + torch.tensor(offset, dtype=torch.float64, device=device)).float()
    mesh = MeshData(vertices=world.cpu().numpy(), faces=faces.cpu().numpy().astype(np.int32), vertex_colors=colors,
                    uv=uv, texture_png=png)
    mesh.validate("extracted mesh")
    return mesh


class _Stages:
    """Seconds per step of ``build_mesh`` to a caller's callback (GPU work synchronised first); a no-op without one."""

    def __init__(self, device: torch.device | str, on_step: StepReport | None):
        self.cuda = torch.device(device).type == "cuda"
        self.on_step = on_step
        self.last = time.perf_counter()

    def __call__(self, name: str, faces: torch.Tensor) -> None:
        if self.on_step is None:
            return
        if self.cuda:
            torch.cuda.synchronize()
        now = time.perf_counter()
        self.on_step(name, now - self.last, int(faces.shape[0]))
        self.last = now


def _world_transform(to_world: tuple[float, Sequence[float]]) -> tuple[float, tuple[float, float, float]]:
    try:
        scale, offset = float(to_world[0]), tuple(float(v) for v in to_world[1])
    except (TypeError, ValueError, IndexError):
        raise ValueError(f"to_world must be (scale, (x, y, z)), got {to_world!r}") from None
    if len(offset) != 3 or not math.isfinite(scale) or scale <= 0 or not all(math.isfinite(v) for v in offset):
        raise ValueError(f"to_world must be (scale > 0, (x, y, z)) with finite numbers, got {to_world!r}")
    return scale, offset
