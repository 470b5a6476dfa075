"""A remote job's results reach the artist: its final PLY and glTF saved to a folder (resumable, SHA-256-checked),
its whole log in a text block that can be copied, and finished jobs removed from the backend and the panel."""
import hashlib
import threading

import bpy

from carrara.addon.client import job_files, pump
from carrara.addon.client.jobs import prune_jobs, save_results
from carrara.addon.client.keep_alive import connect
from carrara.addon.client.runs import find_run
from carrara.addon.client.runtime import runtime
from carrara.backend.mesh.export import write_glb, write_ply
from carrara.backend.server.job_context import JobContext
from carrara.backend.server.workspace import Workspace
from testkit import ServerThread, draw_panel, finished_job_with_mesh, sphere_mesh


def _wait(condition, timeout_s: float, what: str) -> None:
    assert pump.process_pending(timeout_s, until=condition), f"timed out waiting for {what}"


def _job_with_results(workspace_root, log_lines: int = 0) -> tuple[str, dict[str, bytes]]:
    """A finished reconstruction with its final mesh, PLY and glTF published through the server's Reporter."""
    mesh = sphere_mesh(3)
    job_id, _ = finished_job_with_mesh(workspace_root, mesh)
    workspace = Workspace(workspace_root)
    record = next(r for r in workspace.load_jobs() if r.job_id == job_id)
    context = JobContext(record, workspace, threading.RLock(), lambda message: None, threading.Event())
    meshes = context.job_dir / "meshes"
    meshes.mkdir()
    write_ply(mesh, meshes / "final.ply")
    write_glb(mesh, meshes / "final.glb")
    context.artifact(meshes / "final.ply", "ply")
    context.artifact(meshes / "final.glb", "glb")
    for index in range(log_lines):
        context.log(f"iteration {index}: " + "the loss went down " * 4)
    record.set_state("finished", "test fixture")
    workspace.save(record)
    return job_id, {name: (meshes / name).read_bytes() for name in ("final.ply", "final.glb")}


def _follow(job_id: str):
    run = bpy.context.scene.carrara.runs.add()
    run.job_id, run.name, run.kind, run.state = job_id, job_id, "reconstruct", "running"    # as saved mid-run
    connect()
    _wait(lambda: find_run(job_id).results_json != "" and find_run(job_id).state == "finished", 30,
          "the job's snapshot")
    return find_run(job_id)


def test_the_final_ply_and_gltf_land_in_the_chosen_folder_resumably(backend_preferences, tmp_path):
    job_id, files = _job_with_results(tmp_path / "workspace")
    with ServerThread(tmp_path / "workspace") as server:
        backend_preferences.backend_address = server.address
        run = _follow(job_id)
        assert {ref.kind for ref in job_files.result_refs(run)} == {"ply", "glb"}
        folder = tmp_path / "results"
        folder.mkdir()
        (folder / "final.glb.partial").write_bytes(files["final.glb"][:1000])     # an earlier fetch cut short
        paths = save_results(job_id, folder)
        _wait(lambda: not runtime().files.results, 30, "the results")
        assert sorted(path.name for path in paths) == ["final.glb", "final.ply"]
        for name, data in files.items():
            assert hashlib.sha256((folder / name).read_bytes()).digest() == hashlib.sha256(data).digest()
        assert not list(folder.glob("*.partial"))
        assert find_run(job_id).results_note == f"saved to {folder}"
        texts = draw_panel(bpy.types.CARRARA_PT_jobs).operators()
        assert ("carrara.job_save_results", {"job_id": job_id}) in texts


def test_results_default_beside_the_blend(backend_preferences, tmp_path):
    job_id, files = _job_with_results(tmp_path / "workspace")
    (tmp_path / "artist").mkdir()
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "artist" / "scene.blend"))
    with ServerThread(tmp_path / "workspace") as server:
        backend_preferences.backend_address = server.address
        _follow(job_id)
        save_results(job_id)
        _wait(lambda: not runtime().files.results, 30, "the results")
    saved = tmp_path / "artist" / job_files.RESULTS_FOLDER / job_id
    assert (saved / "final.ply").read_bytes() == files["final.ply"]


def test_the_whole_log_is_shown_and_copied(backend_preferences, tmp_path):
    job_id, _ = _job_with_results(tmp_path / "workspace", log_lines=60_000)     # ~5.5 MB: more than one chunk
    log = (tmp_path / "workspace" / "jobs" / job_id / "log.txt").read_text()
    assert len(log.encode()) > 4 * 1024 * 1024
    with ServerThread(tmp_path / "workspace") as server:
        backend_preferences.backend_address = server.address
        _follow(job_id)
        assert bpy.ops.carrara.job_show_log(job_id=job_id) == {'FINISHED'}
        _wait(lambda: find_run(job_id).log_text != "", 30, "the log")
    text = bpy.data.texts[job_files.log_text_name(job_id)].as_string()
    assert text.rstrip("\n") == log.rstrip("\n") and "iteration 59999" in text
    assert bpy.ops.carrara.job_copy_log(job_id=job_id) == {'FINISHED'}
    copied = bpy.context.window_manager.clipboard
    assert copied in ("", text)       # a headless Blender may have no clipboard; where it has one, all of it


def test_finished_jobs_are_removed_and_a_running_one_is_refused(backend_preferences, tmp_path):
    job_id, _ = _job_with_results(tmp_path / "workspace")
    workspace = Workspace(tmp_path / "workspace")
    busy = workspace.create_job("check_dataset", {"dataset": {"path": str(tmp_path), "upload_id": None}})
    with ServerThread(tmp_path / "workspace") as server:
        server.server.jobs._queue.clear()          # keep it queued: the worker never picks it up
        backend_preferences.backend_address = server.address
        _follow(job_id)
        other = bpy.context.scene.carrara.runs.add()
        other.job_id, other.name, other.kind, other.state = busy.job_id, busy.job_id, "check_dataset", "queued"
        assert bpy.ops.carrara.job_remove(job_id=busy.job_id) == {'FINISHED'}
        _wait(lambda: find_run(busy.job_id).error != "", 30, "the refusal")
        assert "cancel it before removing it" in find_run(busy.job_id).error
        assert bpy.ops.carrara.job_remove(job_id=job_id) == {'FINISHED'}
        _wait(lambda: find_run(job_id) is None, 30, "the removal")
        assert not (tmp_path / "workspace" / "jobs" / job_id).exists()
        assert (tmp_path / "workspace" / "jobs" / busy.job_id).exists()


def test_old_jobs_are_pruned_from_the_panel(backend_preferences, tmp_path):
    job_id, _ = _job_with_results(tmp_path / "workspace")
    with ServerThread(tmp_path / "workspace") as server:
        backend_preferences.backend_address = server.address
        _follow(job_id)
        prune_jobs(0.0)
        _wait(lambda: find_run(job_id) is None, 30, "the prune")
        assert not (tmp_path / "workspace" / "jobs" / job_id).exists()
