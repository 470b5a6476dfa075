"""The colour field baked into a PNG texture through a UV atlas.

- **Atlas**: ``atlas.py`` (xatlas, in a child process).
- **Baking** rasterises every triangle in UV space at texel centres on the device, maps each covered texel back to
  a 3-D point by barycentric interpolation (normal interpolated from the vertex normals), and evaluates the colour
  field there in batches, seen head-on like the vertex colours.
- **Dilation** spreads the charts' colours a few texels outward into the empty space, so bilinear filtering and
  mip-mapping at a chart's border do not blend in the background; what stays empty gets the mean colour.

UV convention (that of ``MeshData.uv`` and of Blender): (0, 0) is the bottom-left corner of the image, v grows
upwards. Texel (row r, column c) of the PNG, rows top to bottom, has its centre at u = (c + 0.5) / W,
v = 1 - (r + 0.5) / H.
"""
from __future__ import annotations

import io

import torch
import torch.nn.functional as F

from .colors import rgb_to_bytes
from .fields import ColorFn, evaluate_color

# Each chart's colours are dilated this far (atlas.PADDING texels separate the charts).
DILATE_TEXELS = 8
# Texel candidates rasterised at once (bounds the temporary memory of the bake).
RASTER_BATCH = 1 << 22


@torch.no_grad()
def bake_texture(vertices: torch.Tensor, faces: torch.Tensor, normals: torch.Tensor, uv: torch.Tensor,
                 color_fn: ColorFn, texture_size: int, batch: int) -> bytes:
    """PNG bytes of the colour field baked into a ``texture_size`` square texture through per-corner ``uv``."""
    if not isinstance(texture_size, int) or texture_size < 8:
        raise ValueError(f"texture_size must be an integer of at least 8 texels, got {texture_size!r}")
    size = texture_size
    device = vertices.device
    # Texel centres sit at integer coordinates in this frame: x = u * size - 0.5, y (down) = (1 - v) * size - 0.5.
    corner_uv = uv.to(device).view(-1, 3, 2)
    texel_xy = torch.stack((corner_uv[..., 0] * size - 0.5, (1.0 - corner_uv[..., 1]) * size - 0.5), -1)
    texels, points, point_normals = _rasterise(texel_xy, vertices[faces], normals[faces], size)
    image = torch.zeros((size * size, 3), dtype=torch.float32, device=device)
    filled = torch.zeros(size * size, dtype=torch.bool, device=device)
    image[texels] = evaluate_color(color_fn, points, point_normals, batch)
    filled[texels] = True
    image = _dilate(image.view(size, size, 3), filled.view(size, size), DILATE_TEXELS)
    rgb = rgb_to_bytes(image.view(-1, 3))[:, :3].view(size, size, 3).cpu().numpy()
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()


def _rasterise(texel_xy: torch.Tensor, corner_points: torch.Tensor, corner_normals: torch.Tensor,
               size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Texels whose centres lie in a triangle: their flat index, 3-D point and unit normal (one per texel)."""
    device = texel_xy.device
    low = texel_xy.amin(1).ceil().clamp(0, size - 1).long()
    high = texel_xy.amax(1).floor().clamp(0, size - 1).long()
    extent = (high - low + 1).clamp_min(0)
    a, b, c = texel_xy[:, 0], texel_xy[:, 1], texel_xy[:, 2]
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])   # twice the area
    count = torch.where(area.abs() > 1e-12, extent[:, 0] * extent[:, 1], torch.zeros_like(area, dtype=torch.long))
    out_texels, out_points, out_normals = [], [], []
    ends = torch.cumsum(count, 0)
    start = 0
    while start < count.numel():
        stop = int(torch.searchsorted(ends, ends[start] - count[start] + RASTER_BATCH, right=True))
        stop = max(stop, start + 1)
        tri = torch.repeat_interleave(torch.arange(start, stop, device=device), count[start:stop])
        if tri.numel():
            offset = torch.arange(tri.numel(), device=device) - (torch.cumsum(count[start:stop], 0) - count[start:stop]
                                                                 )[tri - start]
            width = extent[tri, 0]
            px = (low[tri, 0] + offset % width).float()
            py = (low[tri, 1] + offset // width).float()
            ta, tb, tc = a[tri], b[tri], c[tri]
            # Barycentric weights from signed sub-triangle areas; a small tolerance keeps shared edges covered.
            w_a = ((tb[:, 0] - px) * (tc[:, 1] - py) - (tb[:, 1] - py) * (tc[:, 0] - px)) / area[tri]
            w_b = ((tc[:, 0] - px) * (ta[:, 1] - py) - (tc[:, 1] - py) * (ta[:, 0] - px)) / area[tri]
            w_c = 1.0 - w_a - w_b
            weights = torch.stack((w_a, w_b, w_c), 1)
            inside = (weights >= -1e-4).all(1)
            tri, weights = tri[inside], weights[inside]
            out_texels.append(py[inside].long() * size + px[inside].long())
            out_points.append((weights[:, :, None] * corner_points[tri]).sum(1))
            normal = (weights[:, :, None] * corner_normals[tri]).sum(1)
            out_normals.append(normal / normal.norm(dim=1, keepdim=True).clamp_min(1e-12))
        start = stop
    if not out_texels:
        empty = torch.zeros((0, 3), device=device)
        return torch.zeros(0, dtype=torch.long, device=device), empty, empty
    texels = torch.cat(out_texels)
    # A texel on an edge two triangles share is evaluated once.
    unique, inverse = torch.unique(texels, return_inverse=True)
    first = torch.empty(unique.numel(), dtype=torch.long, device=device)
    first.scatter_(0, inverse, torch.arange(texels.numel(), device=device))
    return unique, torch.cat(out_points)[first], torch.cat(out_normals)[first]


def _dilate(image: torch.Tensor, filled: torch.Tensor, texels: int) -> torch.Tensor:
    """Grow the filled texels ``texels`` steps into empty ones (mean of filled neighbours); the rest gets the mean."""
    if not bool(filled.any()):
        return image
    colour = (image * filled[..., None]).permute(2, 0, 1)[None]            # (1, 3, H, W)
    weight = filled.to(image.dtype)[None, None]                             # (1, 1, H, W)
    for _ in range(texels):
        # 3x3 neighbourhood sums (the mean over 9 texels, times 9; the 9 cancels in total / count).
        total = F.avg_pool2d(colour, 3, stride=1, padding=1)
        count = F.avg_pool2d(weight, 3, stride=1, padding=1)
        grow = (weight == 0) & (count > 0)
        colour = torch.where(grow, total / count.clamp_min(1e-12), colour)
        weight = torch.where(grow, torch.ones_like(weight), weight)
    mean = image[filled].mean(0)
    return torch.where(weight[0, 0, ..., None] > 0, colour[0].permute(1, 2, 0), mean)
