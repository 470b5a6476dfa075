"""Fused Triton kernels for the hash-grid encoding on CUDA: forward, and backward into the table gradient.

Same function as ``hashgrid.encode_reference`` (the oracle, and the conventions); tests hold them together.
Programs sweep one level's table at a time (point blocks fastest) so that it stays in L2; fp32 throughout; indices
cannot overflow or leave their level for any input. The design, with its byte counts, predictions and
measurements, is in benchmarks/NOTES-encoding.md.
"""
from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from .hashgrid_launch import TritonLaunch, measured_launch, triton_interpreter_enabled
from .hashgrid_layout import HASH_PRIMES, HashGridConfig, check_active_levels, check_positions, grid_levels

_META_FIELDS: tl.constexpr = tl.constexpr(4)   # per level, int32: entry offset, size, resolution, hashed
_PRIME_Y: tl.constexpr = tl.constexpr(HASH_PRIMES[1])
_PRIME_Z: tl.constexpr = tl.constexpr(HASH_PRIMES[2])


@functools.cache
def level_tensors(config: HashGridConfig, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-level float32 scales and int32 (offset, size, resolution, hashed) on ``device``, built once."""
    levels = grid_levels(config)
    scales = torch.tensor([level.scale for level in levels], dtype=torch.float32, device=device)
    meta = torch.tensor([[level.offset, level.size, level.resolution, int(level.hashed)] for level in levels],
                        dtype=torch.int32, device=device)
    return scales, meta


@triton.jit
def _load_points(x_ptr, n_points, BLOCK: tl.constexpr):
    """This program's first row (an int64 base), its rows' local indices and mask, and their clamped coordinates."""
    first = tl.program_id(0).to(tl.int64) * BLOCK
    local = tl.arange(0, BLOCK)
    row_ok = local < n_points - first
    x_ptr += first * 3
    x = tl.load(x_ptr + local * 3 + 0, mask=row_ok, other=0.0)
    y = tl.load(x_ptr + local * 3 + 1, mask=row_ok, other=0.0)
    z = tl.load(x_ptr + local * 3 + 2, mask=row_ok, other=0.0)
    x = tl.clamp(x, 0.0, 1.0, propagate_nan=tl.PropagateNan.ALL)
    y = tl.clamp(y, 0.0, 1.0, propagate_nan=tl.PropagateNan.ALL)
    z = tl.clamp(z, 0.0, 1.0, propagate_nan=tl.PropagateNan.ALL)
    return first, local, row_ok, x, y, z


@triton.jit
def _lower_vertex(coord, scale, resolution):
    """tcnn's pos = scale * x + 0.5: the lower vertex along one axis and the fraction past it."""
    pos = tl.fma(coord, scale, 0.5)   # one rounding, as tcnn's fmaf and the reference
    lower = tl.floor(pos)
    vertex = tl.minimum(tl.maximum(lower.to(tl.int32), 0), resolution - 1)
    return vertex.to(tl.uint32), pos - lower


@triton.jit
def _level_cell(x, y, z, level, scales_ptr, meta_ptr, N_LEVELS: tl.constexpr):
    """The cell each point falls in at ``level``, and the level's table layout."""
    safe_level = tl.minimum(level, N_LEVELS - 1)   # groups may run past the last level; their lanes are masked
    scale = tl.load(scales_ptr + safe_level)
    offset = tl.load(meta_ptr + safe_level * _META_FIELDS + 0)
    size = tl.load(meta_ptr + safe_level * _META_FIELDS + 1).to(tl.uint32)
    resolution = tl.load(meta_ptr + safe_level * _META_FIELDS + 2)
    hashed = tl.load(meta_ptr + safe_level * _META_FIELDS + 3) != 0
    vx, fx = _lower_vertex(x, scale, resolution)
    vy, fy = _lower_vertex(y, scale, resolution)
    vz, fz = _lower_vertex(z, scale, resolution)
    return vx, vy, vz, fx, fy, fz, resolution.to(tl.uint32), size, hashed, offset


@triton.jit
def _corner(CORNER: tl.constexpr, vx, vy, vz, fx, fy, fz, resolution, size, hashed):
    """Entry index within the level and trilinear weight of one of the 8 cell corners (bit d = +1 along axis d)."""
    if CORNER & 1:
        vx = vx + 1
        wx = fx
    else:
        wx = 1.0 - fx
    if CORNER & 2:
        vy = vy + 1
        wy = fy
    else:
        wy = 1.0 - fy
    if CORNER & 4:
        vz = vz + 1
        wz = fz
    else:
        wz = 1.0 - fz
    hashed_index = (vx ^ (vy * _PRIME_Y) ^ (vz * _PRIME_Z)) & (size - 1)
    dense_index = vx + vy * resolution + vz * (resolution * resolution)
    dense_index = tl.where(dense_index >= size, dense_index - size, dense_index)   # < 2 * size: one wrap
    index = tl.where(hashed, hashed_index, dense_index)
    return index.to(tl.int32), wx * wy * wz


@triton.jit
def _level_base(ptr, offset, F: tl.constexpr):
    """The level's first element. Level sizes are multiples of 8 entries; stated on the int64 element offset (on
    the int32 entry offset the hint was lost in the conversion), so an aligned pair of entries is one 16-byte access."""
    return ptr + tl.multiple_of(offset.to(tl.int64) * F, 8 * F)


@triton.jit
def _x_pair(YZ: tl.constexpr, vx, vy, vz, fx, fy, fz, resolution, size, hashed):
    """The corners 2*YZ and 2*YZ+1 (x-neighbours): entries and weights, whether they are entries 2k and 2k+1 (index
    XOR 1: one aligned run of 2F floats at 2k*F), and whether the lower-x corner holds the even one."""
    low, low_weight = _corner(2 * YZ, vx, vy, vz, fx, fy, fz, resolution, size, hashed)
    high, high_weight = _corner(2 * YZ + 1, vx, vy, vz, fx, fy, fz, resolution, size, hashed)
    return low, low_weight, high, high_weight, (low ^ high) == 1, (low & 1) == 0


@triton.jit
def _encode_forward_kernel(x_ptr, table_ptr, out_ptr, scales_ptr, meta_ptr, n_points, active_levels,
                           N_LEVELS: tl.constexpr, F: tl.constexpr, BLOCK: tl.constexpr,
                           LEVELS_PER_PROGRAM: tl.constexpr, MERGE_X_PAIRS: tl.constexpr):
    first, local, row_ok, x, y, z = _load_points(x_ptr, n_points, BLOCK)
    features = tl.arange(0, F)
    out_ptr += first * (N_LEVELS * F)
    for i in tl.static_range(LEVELS_PER_PROGRAM):
        level = tl.program_id(1) * LEVELS_PER_PROGRAM + i
        lane_ok = (row_ok & (level < active_levels))[:, None]
        vx, vy, vz, fx, fy, fz, resolution, size, hashed, offset = _level_cell(
            x, y, z, level, scales_ptr, meta_ptr, N_LEVELS)
        level_table = _level_base(table_ptr, offset, F)
        acc = tl.zeros((BLOCK, F), dtype=tl.float32)
        if MERGE_X_PAIRS:
            pair = tl.arange(0, 2 * F)
            for yz in tl.static_range(4):
                low, low_weight, high, high_weight, merged, low_even = _x_pair(
                    yz, vx, vy, vz, fx, fy, fz, resolution, size, hashed)
                merged = merged[:, None]
                low_even = low_even[:, None]
                both = tl.load(level_table + (low >> 1)[:, None] * (2 * F) + pair[None, :], mask=lane_ok & merged,
                               other=0.0)
                even, odd = tl.split(tl.permute(tl.reshape(both, (BLOCK, 2, F)), (0, 2, 1)))
                single = lane_ok & ~merged
                low_values = tl.load(level_table + low[:, None] * F + features[None, :], mask=single, other=0.0)
                high_values = tl.load(level_table + high[:, None] * F + features[None, :], mask=single, other=0.0)
                # the unmerged kernel's products in its order, so the features are bit for bit the same
                acc += low_weight[:, None] * tl.where(merged, tl.where(low_even, even, odd), low_values)
                acc += high_weight[:, None] * tl.where(merged, tl.where(low_even, odd, even), high_values)
        else:
            for corner in tl.static_range(8):
                index, weight = _corner(corner, vx, vy, vz, fx, fy, fz, resolution, size, hashed)
                values = tl.load(level_table + index[:, None] * F + features[None, :], mask=lane_ok, other=0.0)
                acc += weight[:, None] * values
        tl.store(out_ptr + local[:, None] * (N_LEVELS * F) + level * F + features[None, :], acc,
                 mask=row_ok[:, None] & (level < N_LEVELS), eviction_policy="evict_first")


@triton.jit
def _in_pass(lane_ok, index, pass_first, pass_count, PARTITIONED: tl.constexpr):
    """``lane_ok`` where entry ``index`` lies in this pass's range [pass_first, pass_first + pass_count): one
    unsigned compare, on the index as the reduction's address uses it (a 1-D mask went through shared memory)."""
    if PARTITIONED:
        return lane_ok & ((index[:, None] - pass_first).to(tl.uint32) < pass_count)
    else:
        return lane_ok


@triton.jit
def _encode_backward_kernel(x_ptr, grad_out_ptr, grad_table_ptr, scales_ptr, meta_ptr, passes_ptr, n_points,
                            active_levels, N_LEVELS: tl.constexpr, F: tl.constexpr, BLOCK: tl.constexpr,
                            LEVELS_PER_PROGRAM: tl.constexpr, MERGE_X_PAIRS: tl.constexpr,
                            PARTITIONED: tl.constexpr):
    first, local, row_ok, x, y, z = _load_points(x_ptr, n_points, BLOCK)
    features = tl.arange(0, F)
    grad_out_ptr += first * (N_LEVELS * F)
    for i in tl.static_range(LEVELS_PER_PROGRAM):
        if PARTITIONED:   # one level a program (TritonLaunch checks it): this pass's level and entry range
            level = tl.load(passes_ptr + tl.program_id(1) * 3 + 0)
            pass_first = tl.load(passes_ptr + tl.program_id(1) * 3 + 1)
            pass_count = tl.load(passes_ptr + tl.program_id(1) * 3 + 2).to(tl.uint32)
        else:
            level = tl.program_id(1) * LEVELS_PER_PROGRAM + i
            pass_first, pass_count = 0, 0   # unused: one pass takes every entry
        lane_ok = (row_ok & (level < active_levels))[:, None]
        grad_row = grad_out_ptr + local[:, None] * (N_LEVELS * F) + level * F
        grad = tl.load(grad_row + features[None, :], mask=lane_ok, other=0.0, eviction_policy="evict_first")
        vx, vy, vz, fx, fy, fz, resolution, size, hashed, offset = _level_cell(
            x, y, z, level, scales_ptr, meta_ptr, N_LEVELS)
        level_grad = _level_base(grad_table_ptr, offset, F)
        if MERGE_X_PAIRS:
            pair = tl.arange(0, 2 * F)
            grad_twice = tl.load(grad_row + (pair % F)[None, :], mask=lane_ok, other=0.0)   # the row again: cached
            for yz in tl.static_range(4):
                low, low_weight, high, high_weight, merged, low_even = _x_pair(
                    yz, vx, vy, vz, fx, fy, fz, resolution, size, hashed)
                merged = merged[:, None]
                even_weight = tl.where(low_even, low_weight, high_weight)
                odd_weight = tl.where(low_even, high_weight, low_weight)
                pair_weight = tl.where(pair[None, :] < F, even_weight[:, None], odd_weight[:, None])
                low_ok = _in_pass(lane_ok, low, pass_first, pass_count, PARTITIONED)   # a merged pair goes out in
                high_ok = _in_pass(lane_ok, high, pass_first, pass_count, PARTITIONED)  # low's pass (even bounds)
                tl.atomic_add(level_grad + (low >> 1)[:, None] * (2 * F) + pair[None, :], pair_weight * grad_twice,
                              mask=low_ok & merged, sem="relaxed")
                tl.atomic_add(level_grad + low[:, None] * F + features[None, :], low_weight[:, None] * grad,
                              mask=low_ok & ~merged, sem="relaxed")
                tl.atomic_add(level_grad + high[:, None] * F + features[None, :], high_weight[:, None] * grad,
                              mask=high_ok & ~merged, sem="relaxed")
        else:
            for corner in tl.static_range(8):
                index, weight = _corner(corner, vx, vy, vz, fx, fy, fz, resolution, size, hashed)
                tl.atomic_add(level_grad + index[:, None] * F + features[None, :], weight[:, None] * grad,
                              mask=_in_pass(lane_ok, index, pass_first, pass_count, PARTITIONED), sem="relaxed")


def _check_device(x01: torch.Tensor, table: torch.Tensor) -> None:
    if table.device != x01.device:
        raise ValueError(f"hash-grid table is on {table.device} but positions are on {x01.device}")
    if x01.device.type != "cuda" and not triton_interpreter_enabled():
        raise RuntimeError(f"the Triton hash-grid kernels run on CUDA tensors, got {x01.device}")
    if x01.shape[0] >= 2 ** 31:
        raise ValueError(f"at most 2^31 - 1 positions per call, got {x01.shape[0]}; split the batch")


def _grid(n_points: int, programs: int, launch: TritonLaunch) -> tuple[int, int]:
    return triton.cdiv(n_points, launch.block), programs


def _merges_x_pairs(flag: bool, config: HashGridConfig) -> bool:
    """Merging x pairs pays only while a pair of entries (2F floats) fits one 16-byte access: F <= 2."""
    return flag and config.features_per_level <= 2


@functools.cache
def grad_passes(config: HashGridConfig, active_levels: int, launch: TritonLaunch,
                device: torch.device) -> torch.Tensor:
    """The partitioned backward's passes in launch order, int32 rows (level, first entry, entry count): level-major,
    a level whose gradient is larger than ``partition_budget_bytes`` split into ``grad_partitions`` equal ranges of
    entry pairs (even bounds, so a merged x pair never straddles two passes), any other level one pass."""
    passes = []
    for level, layout in enumerate(grid_levels(config)[:active_levels]):
        grad_bytes = layout.size * config.features_per_level * 4
        parts = launch.grad_partitions if grad_bytes > launch.partition_budget_bytes else 1
        bounds = [2 * (part * (layout.size // 2) // parts) for part in range(parts + 1)]
        passes += [(level, lo, hi - lo) for lo, hi in zip(bounds, bounds[1:])]
    return torch.tensor(passes, dtype=torch.int32, device=device).reshape(-1, 3)


def forward_into(out: torch.Tensor, x01: torch.Tensor, table: torch.Tensor, config: HashGridConfig,
                 active_levels: int, launch: TritonLaunch) -> torch.Tensor:
    """Write the features of ``x01`` (contiguous float32 (N, 3)) into ``out`` (N, n_levels * F), every element."""
    n_points, f, n_levels = x01.shape[0], config.features_per_level, config.n_levels
    groups = triton.cdiv(active_levels, launch.levels_per_program)
    covered = min(groups * launch.levels_per_program, n_levels)
    if covered < n_levels:
        out[:, covered * f:].zero_()
    if n_points and groups:
        scales, meta = level_tensors(config, x01.device)
        _encode_forward_kernel[_grid(n_points, groups, launch)](
            x01, table, out, scales, meta, n_points, active_levels, N_LEVELS=n_levels, F=f,
            BLOCK=launch.block, LEVELS_PER_PROGRAM=launch.levels_per_program,
            MERGE_X_PAIRS=_merges_x_pairs(launch.merge_x_pairs_forward, config), num_warps=launch.num_warps)
    return out


def backward_into(grad_table: torch.Tensor, x01: torch.Tensor, grad_out: torch.Tensor, config: HashGridConfig,
                  active_levels: int, launch: TritonLaunch) -> torch.Tensor:
    """Add the table gradient of ``sum(features * grad_out)`` into ``grad_table`` (flat, float32)."""
    n_points = x01.shape[0]
    passes = grad_passes(config, active_levels, launch, x01.device) if launch.grad_partitions > 1 else None
    programs = triton.cdiv(active_levels, launch.levels_per_program) if passes is None else passes.shape[0]
    if n_points and programs:
        scales, meta = level_tensors(config, x01.device)
        _encode_backward_kernel[_grid(n_points, programs, launch)](
            x01, grad_out, grad_table, scales, meta, passes, n_points, active_levels, N_LEVELS=config.n_levels,
            F=config.features_per_level, BLOCK=launch.block, LEVELS_PER_PROGRAM=launch.levels_per_program,
            MERGE_X_PAIRS=_merges_x_pairs(launch.merge_x_pairs, config), PARTITIONED=passes is not None,
            num_warps=launch.num_warps)
    return grad_table


class _EncodeFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x01: torch.Tensor, table: torch.Tensor, config: HashGridConfig, active_levels: int,
                launch: TritonLaunch) -> torch.Tensor:
        out = torch.empty(x01.shape[0], config.output_dim, dtype=torch.float32, device=x01.device)
        forward_into(out, x01, table, config, active_levels, launch)
        ctx.save_for_backward(x01)
        ctx.encoding = (config, active_levels, launch, table.shape)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        if not ctx.needs_input_grad[1]:
            return None, None, None, None, None
        (x01,) = ctx.saved_tensors
        config, active_levels, launch, table_shape = ctx.encoding
        grad_table = torch.zeros(table_shape, dtype=torch.float32, device=x01.device)
        backward_into(grad_table, x01, grad_out.float().contiguous(), config, active_levels, launch)
        return None, grad_table, None, None, None


def encode(x01: torch.Tensor, table: torch.Tensor, config: HashGridConfig, active_levels: int | None = None,
           launch: TritonLaunch | None = None) -> torch.Tensor:
    """Features of ``x01`` (N, 3) in [0, 1]^3 from the flat float32 ``table``: (N, n_levels * F) float32."""
    check_positions(x01)
    active = check_active_levels(active_levels, config.n_levels)
    _check_device(x01, table)
    if table.dtype != torch.float32 or table.numel() != config.n_params:
        raise ValueError(f"hash-grid table must be float32 with {config.n_params} elements for this config, got "
                         f"{table.dtype} with {table.numel()}")
    return _EncodeFunction.apply(x01.detach().float().contiguous(), table, config, active,
                                 launch or measured_launch(config))
