"""The hash-grid encoding: layout, the PyTorch reference against hand-computed points and finite differences, the
module's contract, and (on a CUDA machine only) the Triton kernels against the reference at real sizes.

The Triton kernels are also checked on the CPU, through Triton's interpreter, in test_hashgrid_triton_interpreter.py.
"""
from __future__ import annotations

import importlib.util
import os

import pytest
import torch

from carrara.backend.model.hashgrid import HashGridConfig, HashGridEncoding, encode_reference, grid_levels, vertex_index
from carrara.backend.model.hashgrid_launch import GRAD_PARTITION_BUDGET_BYTES, TritonLaunch

# Two levels small enough to compute by hand: base 4, max 8, so b = 2, scales 3 and 7, R = 4 and 8.
# T = 8: level 0 (4^3 = 64 vertices) is dense; level 1 (8^3 = 512 > 256) is hashed.
HAND = HashGridConfig(n_levels=2, features_per_level=2, log2_hashmap_size=8, base_resolution=4, max_resolution=8,
                      bounds=(0.0, 1.0))
SMALL = HashGridConfig(n_levels=4, features_per_level=2, log2_hashmap_size=9, base_resolution=4, max_resolution=24)


def random_table(config: HashGridConfig, seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(config.n_params, generator=generator, dtype=dtype) * 2 - 1


# ---------------------------------------------------------------------------------------------------- layout


def test_default_layout_is_tinycudanns_float32_layout() -> None:
    config = HashGridConfig()   # Neuralangelo: 16 levels, 32 -> 2048, 2^22 entries of 8 features
    levels = grid_levels(config)
    # float32 puts s_5, s_10, s_15 just above 127, 511, 2047, so ceil() + 1 gives 129, 513, 2049
    assert [level.resolution for level in levels] == [32, 43, 56, 74, 98, 129, 169, 223, 295, 389, 513, 676, 892,
                                                      1177, 1553, 2049]
    assert [level.hashed for level in levels] == [False] * 6 + [True] * 10
    assert levels[0].scale == 31.0 and 2047.0 < levels[15].scale < 2047.001
    # Neuralangelo logs 366,708,076 parameters for this config (NVlabs/neuralangelo#24): 365,792,384 of them are
    # the grid (the MLPs hold the other 915,692); the float64 resolutions (128, 512, 2048) would give 365,396,032.
    assert config.n_params == 365_792_384
    assert config.output_dim == 128


def test_layout_offsets_sizes_and_the_smaller_preset() -> None:
    config = HashGridConfig(features_per_level=2, log2_hashmap_size=19)
    levels = grid_levels(config)
    assert [level.hashed for level in levels] == [False] * 4 + [True] * 12   # 74^3 fits 2^19, 98^3 does not
    assert levels[1].size == 79_512        # 43^3 = 79,507 rounded up to a multiple of 8, as tcnn aligns
    assert all(level.size == 2 ** 19 for level in levels[4:])
    for previous, level in zip(levels, levels[1:]):
        assert level.offset == previous.offset + previous.size
    assert config.n_params == 13_969_152


def test_hand_config_layout() -> None:
    level0, level1 = grid_levels(HAND)
    assert (level0.scale, level0.resolution, level0.size, level0.offset, level0.hashed) == (3.0, 4, 64, 0, False)
    assert (level1.scale, level1.resolution, level1.size, level1.offset, level1.hashed) == (7.0, 8, 256, 64, True)


def test_vertex_index_dense_wraps_like_tcnn_and_hash_uses_uint32() -> None:
    level0, level1 = grid_levels(HAND)
    dense = vertex_index(torch.tensor([[2, 1, 0], [3, 2, 1], [4, 0, 0], [0, 1, 0], [4, 4, 4]]), level0)
    # x + 4y + 16z, modulo 64: the far vertex x = 4 of the last half cell lands on (0, 1, 0), as in tcnn
    assert dense.tolist() == [6, 27, 4, 4, 84 % 64]
    # (x * 1) ^ (y * 2654435761 mod 2^32) ^ (z * 805459861 mod 2^32), low 8 bits:
    # y=2 -> 1013904226 (0x3C6EF362, low byte 98); y=3 -> 3668339987 (0xDAA66D13, 19);
    # z=1 -> 805459861 (0x30025795, 149); z=2 -> 1610919722 (0x6004AF2A, 42)
    hashed = vertex_index(torch.tensor([[4, 2, 1], [4, 3, 1], [4, 2, 2], [4, 3, 2]]), level1)
    assert hashed.tolist() == [4 ^ 98 ^ 149, 4 ^ 19 ^ 149, 4 ^ 98 ^ 42, 4 ^ 19 ^ 42] == [243, 130, 76, 61]
    # The finest default level: 2048 * 2654435761 mod 2^32 = (2654435761 mod 2^21) * 2^11 = 1538481 * 2048
    # = 3150809088; 2048 * 805459861 mod 2^32 = 153493 * 2048 = 314353664; 2048 ^ both = 2842765312, low 22 bits:
    finest = grid_levels(HashGridConfig())[15]
    assert vertex_index(torch.tensor([[2048, 2048, 2048]]), finest).tolist() == [2842765312 % 2 ** 22]


# ---------------------------------------------------------------------------------------------- the reference


def test_reference_matches_hand_computed_point() -> None:
    table = random_table(HAND, seed=1)
    t = table.view(-1, 2)
    # x = (0.5, 0.25, 0.125). Level 0: pos = 3x + 0.5 = (2, 1.25, 0.875): lower vertex (2, 1, 0), fractions
    # (0, 0.25, 0.875); the x+1 corners weigh 0. Dense entries x + 4y + 16z: (2,1,0) 6, (2,2,0) 10, (2,1,1) 22,
    # (2,2,1) 26, with weights 0.75*0.125, 0.25*0.125, 0.75*0.875, 0.25*0.875.
    level0 = 0.09375 * t[6] + 0.03125 * t[10] + 0.65625 * t[22] + 0.21875 * t[26]
    # Level 1: pos = 7x + 0.5 = (4, 2.25, 1.375): lower (4, 2, 1), fractions (0, 0.25, 0.375). Hashed entries from
    # test_vertex_index...: (4,2,1) 243, (4,3,1) 130, (4,2,2) 76, (4,3,2) 61, after the level's offset of 64.
    level1 = 0.46875 * t[64 + 243] + 0.15625 * t[64 + 130] + 0.28125 * t[64 + 76] + 0.09375 * t[64 + 61]
    out = encode_reference(torch.tensor([[0.5, 0.25, 0.125]], dtype=torch.float64), table, HAND)
    torch.testing.assert_close(out[0], torch.cat([level0, level1]), rtol=1e-14, atol=1e-15)


def test_reference_at_the_far_face_uses_the_wrapped_vertex() -> None:
    table = random_table(HAND, seed=2)
    t = table.view(-1, 2)
    # x = (1, 0, 0) at level 0: pos = (3.5, 0.5, 0.5), lower (3, 0, 0), all fractions 0.5: the 8 corners weigh 1/8.
    # Entries x + 4y + 16z mod 64 with x in {3, 4}, y, z in {0, 1}: 3, 4, 7, 8, 19, 20, 23, 24.
    expected = sum(t[i] for i in (3, 4, 7, 8, 19, 20, 23, 24)) / 8
    out = encode_reference(torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64), table, HAND, active_levels=1)
    torch.testing.assert_close(out[0, :2], expected, rtol=1e-14, atol=1e-15)
    assert out[0, 2:].tolist() == [0.0, 0.0]


def test_reference_is_continuous_across_cell_faces() -> None:
    table = random_table(SMALL, seed=3)
    scale = grid_levels(SMALL)[3].scale
    face = (7 - 0.5) / scale   # pos = scale * x + 0.5 = 7: a face between level 3's cells
    x = torch.tensor([[face - 1e-6, 0.3, 0.6], [face + 1e-6, 0.3, 0.6]], dtype=torch.float32)
    assert scale * float(x[0, 0]) + 0.5 < 7 < scale * float(x[1, 0]) + 0.5
    below, above = encode_reference(x, table, SMALL)
    # 2e-6 apart, features move by ~ scale * 2e-6 * |table differences| ~ 1e-4; a wrong corner would jump by ~1
    torch.testing.assert_close(below, above, rtol=0, atol=1e-3)


def test_reference_rounds_positions_once_to_float32() -> None:
    # One dense level of 200^3 vertices whose entries hold their vertex's x: trilinear interpolation of a linear
    # function is exact, so the feature is pos_x itself, exposing which pos the reference used.
    config = HashGridConfig(n_levels=1, features_per_level=1, log2_hashmap_size=23, base_resolution=200,
                            max_resolution=200)
    (level,) = grid_levels(config)
    assert not level.hashed and level.scale == 199.0
    table = (torch.arange(config.n_params) % level.resolution).double()
    x = torch.rand(5_000, 3, generator=torch.Generator().manual_seed(7)) * 0.99   # off the wrapping last cell
    out = encode_reference(x, table, config)[:, 0]
    pos_float32 = (x[:, 0].double() * level.scale + 0.5).float().double()   # fmaf: exact product, one rounding
    pos_exact = x[:, 0].double() * level.scale + 0.5
    torch.testing.assert_close(out, pos_float32, rtol=0, atol=1e-12)
    assert (pos_float32 != pos_exact).float().mean() > 0.5   # the rounding is visible for most points


def test_reference_clamps_to_the_unit_cube_and_propagates_nan() -> None:
    table = random_table(SMALL, seed=4)
    x = torch.tensor([[-0.5, 1.5, 0.5], [0.0, 1.0, 0.5], [float("nan"), 0.2, 0.2]], dtype=torch.float64)
    out = encode_reference(x, table, SMALL)
    torch.testing.assert_close(out[0], out[1], rtol=0, atol=0)
    assert out[2].isnan().all() and not out[:2].isnan().any()


def test_reference_table_gradient_matches_finite_differences() -> None:
    generator = torch.Generator().manual_seed(5)
    table = random_table(SMALL, seed=5).requires_grad_()
    x = torch.rand(300, 3, generator=generator, dtype=torch.float64)
    weights = torch.randn(300, SMALL.output_dim, generator=generator, dtype=torch.float64)

    def loss(t: torch.Tensor) -> torch.Tensor:
        return (encode_reference(x, t, SMALL) * weights).sum()

    (grad,) = torch.autograd.grad(loss(table), table)
    assert grad.abs().sum() > 0
    # the loss is linear in the table, so central differences are exact for any step: a large one keeps rounding out
    with torch.no_grad():
        for _ in range(3):   # directional derivatives along random directions
            direction = torch.randn(table.shape, generator=generator, dtype=torch.float64)
            numeric = (loss(table + 0.5 * direction) - loss(table - 0.5 * direction)) / 1.0
            torch.testing.assert_close(numeric, (grad * direction).sum(), rtol=1e-10, atol=1e-10)
        touched = int(grad.abs().argmax())   # and one entry on its own
        bump = torch.zeros_like(table)
        bump[touched] = 0.5
        numeric = (loss(table + bump) - loss(table - bump)) / 1.0
        torch.testing.assert_close(numeric, grad[touched], rtol=1e-10, atol=1e-10)


def test_inactive_levels_are_zero_and_get_no_gradient() -> None:
    table = random_table(SMALL, seed=6).requires_grad_()
    x = torch.rand(200, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    full = encode_reference(x, table, SMALL)
    partial = encode_reference(x, table, SMALL, active_levels=2)
    torch.testing.assert_close(partial[:, :4], full[:, :4], rtol=0, atol=0)
    assert (partial[:, 4:] == 0).all() and (full[:, 4:] != 0).any()
    (grad,) = torch.autograd.grad(partial.sum(), table)
    first_inactive_entry = grid_levels(SMALL)[2].offset
    assert (grad[first_inactive_entry * 2:] == 0).all() and (grad[:first_inactive_entry * 2] != 0).any()
    assert (encode_reference(x, table, SMALL, active_levels=0) == 0).all()


# -------------------------------------------------------------------------------------------------- the module


def test_module_table_init_state_dict_and_cpu_path() -> None:
    encoding = HashGridEncoding(SMALL)
    assert encoding.table.shape == (SMALL.n_params,) and encoding.table.dtype == torch.float32
    assert encoding.table.abs().max() <= 1e-4 and encoding.table.abs().min() < encoding.table.abs().max()
    assert list(encoding.state_dict()) == ["table"]
    assert encoding.implementation_for(torch.device("cpu")) == "torch"
    x = torch.rand(50, 3)
    out = encoding(x, active_levels=3)
    assert out.shape == (50, 8) and out.dtype == torch.float32
    torch.testing.assert_close(out, encode_reference(x, encoding.table, SMALL, 3).float())
    out.sum().backward()
    assert encoding.table.grad is not None and encoding.table.grad.abs().sum() > 0


def test_to_unit_cube_maps_the_bounds() -> None:
    config = HashGridConfig()   # bounds [-2, 2]
    x = config.to_unit_cube(torch.tensor([[-2.0, 0.0, 2.0], [-1.0, 1.0, 0.5]]))
    torch.testing.assert_close(x, torch.tensor([[0.0, 0.5, 1.0], [0.25, 0.75, 0.625]]))


def test_bad_arguments_give_clear_errors() -> None:
    encoding = HashGridEncoding(SMALL)
    with pytest.raises(ValueError, match=r"shape \(N, 3\)"):
        encoding(torch.rand(10, 2))
    with pytest.raises(ValueError, match="active_levels must be in 0..4"):
        encoding(torch.rand(10, 3), active_levels=5)
    with pytest.raises(TypeError, match="active_levels must be an int"):
        encoding(torch.rand(10, 3), active_levels=2.0)
    with pytest.raises(ValueError, match="no gradient with respect to positions"):
        encoding(torch.rand(10, 3, requires_grad=True))
    with pytest.raises(ValueError, match="implementation must be one of"):
        HashGridEncoding(SMALL, implementation="cuda")
    with pytest.raises(ValueError, match="log2_hashmap_size must be in 8..24"):
        HashGridConfig(log2_hashmap_size=26)
    with pytest.raises(ValueError, match="features_per_level must be 1, 2, 4 or 8"):
        HashGridConfig(features_per_level=3)
    with pytest.raises(ValueError, match="block must be a power of two"):
        TritonLaunch(block=100)
    with pytest.raises(ValueError, match="grad_partitions must be a power of two"):
        TritonLaunch(grad_partitions=3)
    with pytest.raises(ValueError, match="grad_partitions > 1 needs levels_per_program=1"):
        TritonLaunch(grad_partitions=4, levels_per_program=4)


def test_grad_passes_split_only_large_levels_into_even_ranges() -> None:
    pytest.importorskip("triton", reason="the pass table lives beside the Triton kernels")
    from carrara.backend.model import hashgrid_triton

    config = HashGridConfig()   # F=8, T=22: levels 0-4 up to 28.7 MiB of gradient, level 5 65.5 MiB, then 128 MiB
    passes = hashgrid_triton.grad_passes(config, 16, TritonLaunch(block=128, grad_partitions=4), torch.device("cpu"))
    for level, layout in enumerate(grid_levels(config)):
        rows = passes[passes[:, 0] == level].tolist()
        assert len(rows) == (4 if layout.size * 8 * 4 > GRAD_PARTITION_BUDGET_BYTES else 1) == (4 if level >= 5 else 1)
        assert rows[0][1] == 0 and sum(count for _, _, count in rows) == layout.size
        assert all(first % 2 == 0 and count % 2 == 0 for _, first, count in rows)   # a merged pair stays in one
        assert all(a[1] + a[2] == b[1] for a, b in zip(rows, rows[1:]))              # contiguous, in order
    assert passes[:, 0].tolist() == sorted(passes[:, 0].tolist())                     # level-major launch order
    assert hashgrid_triton.grad_passes(config, 3, TritonLaunch(grad_partitions=8), torch.device("cpu")).shape == (3, 3)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU refusal; this machine has a GPU")
def test_triton_on_cpu_tensors_is_refused_outside_the_interpreter() -> None:
    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("TRITON_INTERPRET=1 lets Triton run on CPU tensors")
    encoding = HashGridEncoding(SMALL, implementation="triton")
    with pytest.raises(RuntimeError, match="runs on CUDA tensors|needs the triton package"):
        encoding(torch.rand(10, 3))


def test_tcnn_without_tinycudann_is_a_clear_error() -> None:
    if importlib.util.find_spec("tinycudann") is not None:
        pytest.skip("tinycudann is installed here; this checks the message when it is not")
    with pytest.raises(RuntimeError, match="implementation='tcnn' needs tinycudann"):
        HashGridEncoding(SMALL, implementation="tcnn")


# ---------------------------------------------------------------------- GPU: the Triton kernels at real sizes

cuda_only = pytest.mark.skipif(
    not torch.cuda.is_available() or importlib.util.find_spec("triton") is None,
    reason="needs a CUDA GPU and triton: run benchmarks/gpu_check_encoding.sh on the GPU machine")
TOLERANCE = 1e-5   # ||triton - float64 reference|| / ||reference||; float32 arithmetic lands near 1e-7
GPU_LAUNCHES = (TritonLaunch(), TritonLaunch(block=128, num_warps=4, levels_per_program=4),
                TritonLaunch(block=512, num_warps=8, levels_per_program=1),
                TritonLaunch(block=64, num_warps=2, levels_per_program=3),   # groups that run past level 15
                TritonLaunch(merge_x_pairs=True), TritonLaunch(block=128, levels_per_program=4, merge_x_pairs=True),
                TritonLaunch(merge_x_pairs=True, merge_x_pairs_forward=True),
                TritonLaunch(block=128, levels_per_program=4, merge_x_pairs=True, merge_x_pairs_forward=True),
                TritonLaunch(block=128, grad_partitions=4),   # F=8: levels 5-15 in 4 passes; F=2: one pass each
                TritonLaunch(block=128, grad_partitions=8, partition_budget_bytes=1 << 20, merge_x_pairs=True,
                             merge_x_pairs_forward=True))   # F=2 levels split too, beside merged pairs


def rel_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return float((value.double() - reference).norm() / reference.norm())


def fresh_generator() -> tuple[torch.Generator, int]:
    seed = int.from_bytes(os.urandom(4), "little")   # fresh inputs every run; the seed is in failure messages
    return torch.Generator(device="cuda").manual_seed(seed), seed


@cuda_only
@pytest.mark.parametrize("features, log2_size", [(2, 19), (8, 22)])
@pytest.mark.parametrize("launch", GPU_LAUNCHES, ids=lambda launch: launch.name)
def test_triton_matches_reference_on_gpu(features: int, log2_size: int, launch: TritonLaunch) -> None:
    from carrara.backend.model import hashgrid_triton

    config = HashGridConfig(features_per_level=features, log2_hashmap_size=log2_size)
    generator, seed = fresh_generator()
    n = 2 ** 17 + 37   # not a multiple of any block
    x = torch.rand(n, 3, device="cuda", generator=generator)
    table = torch.rand(config.n_params, device="cuda", generator=generator) * 2 - 1
    for active in (16, 7):
        out = torch.full((n, config.output_dim), float("nan"), device="cuda")   # poisoned: all must be written
        hashgrid_triton.forward_into(out, x, table, config, active, launch)
        grad_out = torch.randn(n, config.output_dim, device="cuda", generator=generator)
        grad = hashgrid_triton.backward_into(torch.zeros_like(table), x, grad_out, config, active, launch)
        table64 = table.double().requires_grad_()
        reference = encode_reference(x.double(), table64, config, active)
        (reference * grad_out.double()).sum().backward()
        assert not out.isnan().any(), f"unwritten output (seed {seed})"
        assert (out[:, active * features:] == 0).all()
        assert rel_error(out, reference.detach()) < TOLERANCE, f"values, active {active} (seed {seed})"
        assert rel_error(grad, table64.grad) < TOLERANCE, f"table gradient, active {active} (seed {seed})"
        first_inactive = grid_levels(config)[active].offset * features if active < 16 else grad.numel()
        assert (grad[first_inactive:] == 0).all()
        del table64, reference


@cuda_only
def test_triton_module_autograd_matches_torch_module() -> None:
    config = HashGridConfig(features_per_level=4, log2_hashmap_size=20)
    generator, seed = fresh_generator()
    triton_encoding = HashGridEncoding(config).cuda()
    torch_encoding = HashGridEncoding(config, implementation="torch").cuda()
    with torch.no_grad():
        triton_encoding.table.uniform_(-1, 1, generator=generator)
        torch_encoding.table.copy_(triton_encoding.table)
    assert triton_encoding.implementation_for(torch.device("cuda")) == "triton"
    x = torch.rand(100_000, 3, device="cuda", generator=generator)
    grad_out = torch.randn(100_000, config.output_dim, device="cuda", generator=generator)
    outputs = []
    for encoding in (triton_encoding, torch_encoding):
        out = encoding(x, active_levels=11)
        (out * grad_out).sum().backward()
        outputs.append(out.detach())
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-5, atol=1e-6, msg=f"seed {seed}")
    assert rel_error(triton_encoding.table.grad, torch_encoding.table.grad.double()) < TOLERANCE, f"seed {seed}"


@cuda_only
def test_triton_forward_is_deterministic_and_nan_stays_in_its_row() -> None:
    from carrara.backend.model import hashgrid_triton

    config = HashGridConfig(features_per_level=2, log2_hashmap_size=19)
    generator, seed = fresh_generator()
    x = torch.rand(300_000, 3, device="cuda", generator=generator)
    x[123, 1] = float("nan")
    table = torch.rand(config.n_params, device="cuda", generator=generator) * 2 - 1
    first = hashgrid_triton.encode(x, table, config)
    second = hashgrid_triton.encode(x, table, config)
    assert torch.equal(first.nan_to_num(7.0), second.nan_to_num(7.0)), f"a race: runs differ (seed {seed})"
    assert first[123].isnan().all()
    assert first.isnan().sum() == config.output_dim


@cuda_only
def test_triton_gradient_under_heavy_atomic_contention() -> None:
    from carrara.backend.model import hashgrid_triton

    config = HashGridConfig(features_per_level=8, log2_hashmap_size=19)
    generator, seed = fresh_generator()
    # a million points inside one cell of the coarsest level: 8 entries there take every point's gradient
    x = 0.5 + torch.rand(1 << 20, 3, device="cuda", generator=generator) * 0.01
    grad_out = torch.rand(1 << 20, config.output_dim, device="cuda", generator=generator)
    table = torch.rand(config.n_params, device="cuda", generator=generator)
    grad = hashgrid_triton.backward_into(torch.zeros_like(table), x, grad_out, config, 16, TritonLaunch())
    table64 = table.double().requires_grad_()
    (encode_reference(x.double(), table64, config) * grad_out.double()).sum().backward()
    # float32 sums of ~1e6 same-sign terms in any order drift by a random walk of roundings, ~3e-5 relative;
    # a lost update would be off by a whole term's share, orders of magnitude more
    assert rel_error(grad, table64.grad) < 1e-3, f"seed {seed}"
