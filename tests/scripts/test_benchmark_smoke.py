"""Every GPU benchmark's ``--smoke`` mode, run here on the CPU: the scripts only ever run for real on the GPU machine,
where device time is scarce, so a script that breaks (an argument renamed, a folder not made, a field read that no
longer exists) must fail here first. Each run checks what the script wrote or printed, not only its exit status.
Results go to a temporary folder (``CARRARA_RESULTS_DIR``), so the checkout is left as it was."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

from PIL import Image as PILImage

from engine_scenes import cached_scene

ROOT = Path(__file__).resolve().parents[2]


def _smoke(script: str, tmp_path: Path, *args: str) -> str:
    """Runs ``benchmarks/<script> --smoke`` and returns its stdout; a failure shows the end of its output."""
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    env["CARRARA_RESULTS_DIR"] = str(tmp_path / "results")
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--smoke", *args], env=env,
                          capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + "\n" + done.stderr[-3000:]
    return done.stdout


def _result(tmp_path: Path, name: str) -> dict:
    return json.loads((tmp_path / "results" / f"{name}.json").read_text())


def test_encoding_benchmark_checks_every_shape_against_the_reference_and_times_both_baselines(tmp_path):
    out = _smoke("bench_encoding.py", tmp_path)
    for config in ("F2_T19", "F8_T22"):
        assert f"{config}: N=256  table 0 MiB  checks: all ok" in out, out[-2000:]
    assert out.count("torch.compile: timed") == 2, out[-2000:]
    assert out.count("vs torch_reference") == 2 and out.count("vs torch_compile_reference") == 2


def test_extraction_benchmark_compares_with_the_neuralangelo_scheme(tmp_path):
    out = _smoke("bench_extraction.py", tmp_path)
    assert "resolution 48:" in out and "resolution 64:" in out
    assert "baseline (Neuralangelo scheme) at 48:" in out and "duplicate seam vertices" in out


def test_training_benchmark_states_every_baseline_as_a_ratio_and_breaks_the_step_down(tmp_path):
    out = _smoke("bench_training.py", tmp_path)
    preset = _result(tmp_path, "training_cpu-smoke")["presets"]["ci"]
    assert preset["ours"]["it_per_s"] > 0 and preset["ours"]["expected_duration_s"] > 0
    assert preset["encoding"] == "torch"
    for baseline in ("baseline_recipe_sampling", "baseline_no_eikonal_ball"):
        ratio = preset[baseline]["it_per_s_ours_over_baseline"]
        assert math.isfinite(ratio) and ratio > 0, baseline
    assert "baseline_before_issue_17" not in preset     # the engine A/B runs on a GPU only
    breakdown = preset["step_breakdown"]
    assert breakdown["profiled_steps"] == 2 and breakdown["step_ms"]["measured"] > 0
    parts = breakdown["parts"]
    for part in ("ray_batch", "sample_depths", "encoding", "sdf_mlp", "numerical_gradient", "color_mlp",
                 "volume_rendering", "eikonal_ball", "losses", "backward_call", "optimizer"):
        assert parts[part]["total_ms"] > 0, part
    # backward traced to its forward part (the chair has masks, so no background network runs)
    for part in ("encoding", "sdf_mlp", "color_mlp"):
        assert parts[part]["backward_ms"] > 0, part
    assert abs(sum(p["share"] for p in parts.values()) - 1.0) < 1e-6
    assert breakdown["paths"]["render/sdf_with_taps/encoding"]["backward_ms"] > 0
    network_ms = parts["encoding"]["total_ms"] + parts["sdf_mlp"]["total_ms"]
    assert 0 < breakdown["numerical_gradient_taps"]["total_ms"] < network_ms
    assert "ci: CPU self time of the ops in each range, 2 steps" in out and "= numerical-gradient taps" in out


def _without_masks(folder: Path, target: Path) -> Path:
    """A copy of a capture whose RGBA photos are flattened onto grey: photos without masks, as a scene has."""
    shutil.copytree(folder, target)
    for photo in (target / "images").glob("*.png"):
        rgba = PILImage.open(photo).convert("RGBA")
        flat = PILImage.new("RGBA", rgba.size, (128, 128, 128, 255))
        flat.alpha_composite(rgba)
        flat.convert("RGB").save(photo)
    return target


def test_training_benchmark_times_a_scene_step_with_its_background_network(tmp_path, tmp_path_factory):
    capture = _without_masks(cached_scene(tmp_path_factory).folder, tmp_path / "unmasked")
    _smoke("bench_training.py", tmp_path, "--dataset", str(capture), "--scene-type", "outdoor",
           "--skip-baselines")
    result = _result(tmp_path, "training_unmasked_cpu-smoke")
    assert result["scene_type"] == "outdoor"
    parts = result["presets"]["ci"]["step_breakdown"]["parts"]
    assert parts["background"]["forward_ms"] > 0 and parts["background"]["backward_ms"] > 0


def test_quality_benchmark_measures_held_out_psnr_against_the_untrained_model(tmp_path, tmp_path_factory):
    scene = cached_scene(tmp_path_factory)
    _smoke("bench_quality.py", tmp_path, "--dataset", str(scene.folder), "--smoothness",
           "--set", "losses.curvature=1e-3", "--eikonal-ball-points", "1")
    result = _result(tmp_path, "quality_bunny_cpu-smoke")
    assert result["preset_changes"] == {"losses.curvature": "1e-3", "losses.eikonal_ball_points_per_ray": "1.0"}
    assert result["eikonal_ball_points_per_ray"] == 1.0
    assert [p["minutes"] for p in result["points"]] == [0.05, 0.1]
    assert result["held_out_photos"] > 0 and result["baseline_untrained"]["psnr_held_out"] > 0
    assert all(p["psnr_gain_over_untrained_db"] > 0 and p["faces"] > 0 for p in result["points"])
    untrained_fit = result["baseline_untrained"]["psnr_training_views"]
    assert all(p["psnr_training_views"] > untrained_fit for p in result["points"])
    # the box scene has no sparse points: the plane is the mesh's own (a blob's, after seconds: no patch on it)
    assert all(p["smoothness"]["points_from"] == "mesh" and p["smoothness"]["plane_inliers"] >= 3
               for p in result["points"])


def test_engine_quality_benchmark_trains_both_engines_to_equal_iterations(tmp_path, tmp_path_factory):
    scene = cached_scene(tmp_path_factory)
    out = _smoke("bench_engine_quality.py", tmp_path, "--dataset", str(scene.folder))
    run = _result(tmp_path, "engine_quality_bunny_cpu-smoke")["runs"]["ci:20"]
    for label in ("ours", "baseline_before_issue_17"):
        assert run[label][0]["iteration"] == 20 and run[label][0]["faces"] > 0, label
    ratio = run["ours_over_baseline"][0]
    assert math.isfinite(ratio["it_per_s_ours_over_baseline"]) and "psnr_ours_minus_baseline_db" in ratio
    assert "ci:20: ours/baseline" in out


def test_loop_benchmark_follows_a_real_backend_to_the_final_mesh(tmp_path):
    out = _smoke("bench_loop.py", tmp_path)
    result = _result(tmp_path, "loop_cpu-smoke")
    times = result["times"]
    assert 0 < times["first_preview_downloaded_s"] <= times["training_done_s"] <= times["final_mesh_downloaded_s"]
    kinds = [m["kind"] for m in result["meshes"]]
    assert "preview_mesh" in kinds and kinds[-1] == "final_mesh", out[-2000:]


def test_sfm_benchmark_times_both_pipelines_and_measures_poses_against_the_truth(tmp_path):
    out = _smoke("bench_sfm.py", tmp_path)
    result = _result(tmp_path, "sfm_cpu-smoke")
    video = result["video"]
    assert video["ours"]["registered"] >= 6 and video["ours"]["sift_device"] == "cpu"
    assert set(video["ours"]["seconds_per_frame"]) == {"frames", "features", "matching", "mapping", "undistortion"}
    assert video["baseline_plain_pycolmap"]["finished"] and video["ratio_baseline_over_ours_total"] > 0
    for who in ("ours", "baseline_plain_pycolmap"):
        errors = result["accuracy"][who]["pose_errors"]
        assert errors["shared_images"] >= 6 and errors["rotation_error_worst_pair_deg"] < 5, (who, errors)
    assert "accuracy ours:" in out and "accuracy baseline_plain_pycolmap:" in out


def test_multigpu_benchmark_trains_on_one_and_two_ranks_and_runs_two_jobs_at_once(tmp_path, tmp_path_factory):
    scene = cached_scene(tmp_path_factory)
    out = _smoke("bench_multigpu.py", tmp_path, "--dataset", str(scene.folder))
    result = _result(tmp_path, "multigpu_cpu-smoke")
    one, two = result["training"]["runs"]
    assert (one["gpus"], two["gpus"]) == (1, 2) and one["checkpoint_iteration"] == two["checkpoint_iteration"] == 4
    assert two["speedup_over_one"] > 0 and one["faces"] > 0 and two["faces"] > 0
    jobs = result["jobs"]
    assert jobs["job_devices"] == ["cpu", "cpu"] and [j["device"] for j in jobs["two_jobs"]] == ["cpu", "cpu"]
    assert all(j["share_of_one_job_rate"] > 0 for j in jobs["two_jobs"]), out[-2000:]
    assert jobs["two_gpu_job"]["devices"] == ["cpu", "cpu"] and jobs["two_gpu_job"]["speedup_over_one_job"] > 0
