"""The Triton kernels against the PyTorch reference on the CPU, through Triton's interpreter.

TRITON_INTERPRET=1 is read when triton is imported and must not leak into other tests, so the checks run in a
child process: this file, run as a script. Sizes are tiny (the interpreter runs each program in numpy) but cover
dense and hashed levels, the dense wrap at the far faces, positions outside [0, 1], a block not filled, level
groups that run past the last level, inactive levels, F = 1, 2 and 8, merged x pairs (the forward's bit for bit
against the unmerged one), the backward's passes over levels above a lowered budget, and the module's autograd
path. Scales stay small because the interpreter's fma rounds twice (the GPU's is fused, as the reference
assumes): at scale 2047 that alone moves a fraction by an ulp of pos; the GPU tests in test_hashgrid.py cover the
real sizes.
"""
from __future__ import annotations

import os

TOLERANCE = 1e-5   # float32 kernels against the float64 reference; they land near 1e-7


def test_triton_kernels_match_reference_in_interpreter() -> None:
    from testkit import run_in_triton_interpreter   # here: the child runs this file without tests/ on its path
    out = run_in_triton_interpreter(__file__)
    assert "interpreter checks passed: 19" in out, out


def _run_checks() -> int:
    """Every case: forward into a NaN-poisoned output, backward into zeros, both against float64 autograd."""
    assert os.environ.get("TRITON_INTERPRET") == "1", "run through the test: it sets TRITON_INTERPRET=1 first"
    import dataclasses

    import torch

    from carrara.backend.model import hashgrid_triton
    from carrara.backend.model.hashgrid import HashGridConfig, HashGridEncoding, encode_reference
    from carrara.backend.model.hashgrid_launch import GRAD_PARTITION_BUDGET_BYTES, TritonLaunch

    generator = torch.Generator().manual_seed(int.from_bytes(os.urandom(4), "little"))
    dense_and_hashed = HashGridConfig(n_levels=4, features_per_level=2, log2_hashmap_size=9, base_resolution=4,
                                      max_resolution=24)
    wide = HashGridConfig(n_levels=3, features_per_level=8, log2_hashmap_size=8, base_resolution=3,
                          max_resolution=12)
    narrow = HashGridConfig(n_levels=3, features_per_level=1, log2_hashmap_size=9, base_resolution=4,
                            max_resolution=24)
    x = torch.rand(45, 3, generator=generator)
    x[:4] = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.999], [-0.2, 1.3, 0.5]])
    # the interpreter's cost is per program, so most cases take all 45 points in one (partly filled) block
    cases = [(dense_and_hashed, TritonLaunch(block=16, levels_per_program=1), 2),   # several blocks, a tail
             (dense_and_hashed, TritonLaunch(block=64, levels_per_program=1), 4),
             (dense_and_hashed, TritonLaunch(block=64, levels_per_program=3), 4),   # group 2 runs past level 3
             (dense_and_hashed, TritonLaunch(block=64, levels_per_program=4), 3),
             (dense_and_hashed, TritonLaunch(block=64, levels_per_program=1), 0),
             (wide, TritonLaunch(block=64, levels_per_program=1), 3),
             (wide, TritonLaunch(block=64, levels_per_program=3), 2),
             (dense_and_hashed, TritonLaunch(block=64, levels_per_program=1, merge_x_pairs=True), 4),
             (dense_and_hashed, TritonLaunch(block=16, levels_per_program=3, merge_x_pairs=True), 3),
             (wide, TritonLaunch(block=64, levels_per_program=1, merge_x_pairs=True), 3),
             (dense_and_hashed, TritonLaunch(block=16, merge_x_pairs=True, merge_x_pairs_forward=True), 4),
             (dense_and_hashed, TritonLaunch(block=64, levels_per_program=3, merge_x_pairs_forward=True), 4),
             # levels of 512 entries (4 KiB) above a 1 KiB budget: split in passes, level 0 (512 B) is not
             (dense_and_hashed, TritonLaunch(block=16, grad_partitions=4, partition_budget_bytes=1024), 4),
             (dense_and_hashed, TritonLaunch(block=64, grad_partitions=2, partition_budget_bytes=1024,
                                             merge_x_pairs=True, merge_x_pairs_forward=True), 3),
             (wide, TritonLaunch(block=64, grad_partitions=8, partition_budget_bytes=4096), 3),   # 108 pairs / 8
             (dense_and_hashed, TritonLaunch(block=64, grad_partitions=4), 4),   # every level fits: one pass each
             (narrow, TritonLaunch(block=64, grad_partitions=2, partition_budget_bytes=1024, merge_x_pairs=True,
                                   merge_x_pairs_forward=True), 3)]   # F=1: a pair is 8 bytes
    checked = 0
    for config, launch, active in cases:
        table = torch.rand(config.n_params, generator=generator) * 2 - 1
        out = torch.full((x.shape[0], config.output_dim), float("nan"))
        hashgrid_triton.forward_into(out, x, table, config, active, launch)
        grad_out = torch.randn(x.shape[0], config.output_dim, generator=generator)
        grad = hashgrid_triton.backward_into(torch.zeros_like(table), x, grad_out, config, active, launch)
        table64 = table.double().requires_grad_()
        reference = encode_reference(x.double(), table64, config, active)
        if active:
            (reference * grad_out.double()).sum().backward()
        label = f"{config.features_per_level=} {launch} {active=}"
        assert not out.isnan().any(), f"unwritten output: {label}"
        if launch.merge_x_pairs_forward:   # same products, same order: the same bits
            unmerged = torch.full_like(out, float("nan"))
            hashgrid_triton.forward_into(unmerged, x, table, config, active,
                                         dataclasses.replace(launch, merge_x_pairs_forward=False))
            assert torch.equal(out, unmerged), f"merged forward differs from the unmerged one: {label}"
        if launch.partition_budget_bytes < GRAD_PARTITION_BUDGET_BYTES:
            passes = hashgrid_triton.grad_passes(config, active, launch, x.device)
            assert passes.shape[0] > active, f"no level was split into passes: {label}"
        if active:
            _assert_close(out, reference.detach(), f"values: {label}")
            _assert_close(grad, table64.grad, f"table gradient: {label}")
        else:
            assert (out == 0).all() and (grad == 0).all(), f"no active level must give zeros: {label}"
        checked += 1

    for config in (dense_and_hashed, wide):   # the module, through autograd, against the torch module
        triton_module = HashGridEncoding(config, implementation="triton")
        torch_module = HashGridEncoding(config, implementation="torch")
        torch_module.load_state_dict(triton_module.state_dict())
        outputs = [module(x, active_levels=2) for module in (triton_module, torch_module)]
        for output in outputs:
            (output * torch.arange(config.output_dim)).sum().backward()
        _assert_close(outputs[0].detach(), outputs[1].detach().double(), "module values")
        _assert_close(triton_module.table.grad, torch_module.table.grad.double(), "module table gradient")
        checked += 1
    print(f"interpreter checks passed: {checked}")
    return checked


def _assert_close(value, reference, what: str) -> None:
    error = float((value.double() - reference).norm() / reference.norm())
    assert error < TOLERANCE, f"{what}: relative error {error:.2e}"


if __name__ == "__main__":
    _run_checks()
