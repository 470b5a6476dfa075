"""Extraction split across devices (here several CPU "devices", one thread each) makes the mesh one device makes:
the same vertices in the same order and the same triangles, also where the closure hands blocks between slabs."""
from __future__ import annotations

import pytest
import torch

from carrara.backend.mesh.extract import extract_surface, extract_surface_on
from sdf_shapes import torus


def two_spheres(points: torch.Tensor) -> torch.Tensor:
    a = (points - torch.tensor([0.23, 0.05, -0.02])).norm(dim=1) - 0.4
    b = (points - torch.tensor([-0.27, -0.03, 0.04])).norm(dim=1) - 0.33
    return torch.minimum(a, b)


def _triangles(faces: torch.Tensor) -> list[tuple[int, ...]]:
    """Each triangle from its smallest vertex index on (orientation kept), sorted: the mesh's faces as a set."""
    start = faces.argmin(1, keepdim=True)
    rolled = torch.gather(faces, 1, (start + torch.arange(3)) % 3)
    return sorted(map(tuple, rolled.tolist()))


@pytest.mark.parametrize("field, devices, lipschitz", [(two_spheres, 2, 1.5), (torus, 2, 1.5), (two_spheres, 3, 1.5),
                                                       (two_spheres, 2, 0.02)],
                         ids=["two_spheres", "torus", "3 devices", "closure across slabs"])
def test_split_extraction_equals_one_device(field, devices, lipschitz):
    one = extract_surface(field, 72, block_res=4, lipschitz=lipschitz)
    split = extract_surface_on([("cpu", field)] * devices, 72, block_res=4, lipschitz=lipschitz)
    assert one.faces.shape[0] > 1000 and split.stats["devices"] == devices
    assert torch.equal(split.vertices, one.vertices)
    assert _triangles(split.faces) == _triangles(one.faces)
    assert split.stats["blocks_marched"] == one.stats["blocks_marched"]
    if lipschitz < 1:      # the coarse pass missed surface blocks: the closure found them, some in other slabs
        assert one.stats["closure_rounds"] > 1 and split.stats["closure_rounds"] > 1


def test_a_failing_device_fails_the_extraction():
    def broken(points: torch.Tensor) -> torch.Tensor:
        if (points[:, 0] > 0.2).any():
            raise RuntimeError("CUDA out of memory on the second device")
        return two_spheres(points)

    with pytest.raises(RuntimeError, match="second device"):
        extract_surface_on([("cpu", two_spheres), ("cpu", broken)], 48, block_res=4)
