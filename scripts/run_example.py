"""The main job, headless: an artist's whole loop on the bundled chair, through the add-on's own operators.

Enable the add-on as Blender does, import the COLMAP model, take the estimated sphere, let the add-on start a
local backend, press Reconstruct (GPU if the backend has one, else a short CPU preset), pump until the previews
and the final textured mesh have landed in place, then write ``out/chair.blend``, ``out/chair.png`` (the point
cloud next to the result, rendered with Cycles) and the backend's ``out/chair.ply`` / ``out/chair.glb``.
Run it through ``scripts/example.sh``, which sets up the environment first.
"""
from __future__ import annotations

import argparse
import socket
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=ROOT / "examples" / "chair",
                        help="COLMAP workspace or model folder (default: the bundled chair)")
    parser.add_argument("--out", type=Path, default=ROOT / "out", help="folder for the .blend, PNG and meshes")
    parser.add_argument("--name", default="chair", help="base name of the output files")
    parser.add_argument("--preset", default="auto",
                        help="auto (preview on a GPU, ci on a CPU), ci, preview, standard or high")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for the final mesh")
    return parser.parse_args()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _say(text: str) -> None:
    print(f"[carrara example] {text}", flush=True)


def main() -> int:
    args = _arguments()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    import bpy
    import addon_utils      # importable once bpy has put Blender's own modules on the path

    bpy.ops.wm.read_factory_settings(use_empty=True)
    addon_utils.enable("carrara", default_set=True, handle_error=lambda exc: (_ for _ in ()).throw(exc))
    from carrara.addon.client import pump
    from carrara.addon.client.keep_alive import connect
    from carrara.addon.client.runtime import runtime
    from carrara.addon.client.connection import ConnectionState
    from carrara.addon.client.transfers import ArtifactDownload, TransferState
    from carrara.addon.panels.progress_text import status_bar_text
    from carrara.shared import protocol as p

    prefs = bpy.context.preferences.addons["carrara"].preferences
    prefs.backend_address = f"tcp://127.0.0.1:{_free_port()}"
    prefs.python = sys.executable
    prefs.workspace = str(out / "workspace")
    prefs.auto_start = True
    scene = bpy.context.scene

    # 1. Import the COLMAP model exactly; the sphere is estimated on import.
    result = bpy.ops.import_scene.carrara_colmap(filepath=str(args.dataset.resolve()), z_up=True)
    if result != {"FINISHED"}:
        _say(f"import failed: {result}")
        return 1
    recon = scene.carrara.reconstruction
    _say(f"imported {recon.image_count} cameras and {recon.point_count:,} points from {recon.model_path}; sphere "
         f"centre {tuple(round(v, 3) for v in recon.sphere_center)}, radius {recon.sphere_radius:.3f}")

    # 2. Connect: the add-on starts the local backend itself.
    connect(bpy.context)
    if not pump.process_pending(120, until=lambda: runtime().connection.state == ConnectionState.CONNECTED):
        _say(f"the local backend did not answer: {bpy.context.window_manager.carrara_backend.problem}")
        return 1
    status = bpy.context.window_manager.carrara_backend
    on_gpu = status.device == "cuda"
    _say(f"backend {status.server_version} on {status.gpu_name if on_gpu else 'the CPU'}")

    # 3. Reconstruct with a short preset, streaming previews.
    settings = scene.carrara.settings
    settings.preset = args.preset if args.preset != "auto" else ("preview" if on_gpu else "ci")
    settings.preview_every_s = 5.0 if on_gpu else 10.0
    settings.mesh_resolution = 1024 if on_gpu else 192
    settings.decimate_faces = 300_000 if on_gpu else 60_000
    settings.texture_size = 2048 if on_gpu else 512
    started = time.monotonic()
    if bpy.ops.carrara.reconstruct() != {"FINISHED"}:
        return 1
    run_index = len(scene.carrara.runs) - 1     # its name changes (request id, upload, job id): keep its place

    def run():
        return scene.carrara.runs[run_index]

    previews: list[str] = []
    last_line = ""

    def delivered() -> bool:
        nonlocal last_line
        current = run()
        if current.preview_artifact and current.preview_artifact not in previews:
            previews.append(current.preview_artifact)
            _say(f"preview {len(previews)} in the scene after {time.monotonic() - started:.1f} s "
                 f"({current.preview_artifact})")
        line = f"{current.state} {current.iteration}/{current.total}"
        if line != last_line and current.iteration % 50 == 0:
            last_line = line
            _say(status_bar_text(current))      # the panel's words: figures not known yet are left out
        # The files are written after the final mesh is sent: the job is done once it says "finished".
        return (bool(current.final_object) and current.state == "finished") or \
            current.state in ("failed", "cancelled", "missing")

    pump.process_pending(args.timeout, until=delivered)
    current = run()
    if not current.final_object:
        _say(f"no final mesh: state {current.state}, error {current.error or '-'}\n{current.traceback}")
        return 1
    _say(f"final mesh {current.final_object!r} in the scene after {time.monotonic() - started:.1f} s, "
         f"{len(previews)} preview(s) before it")

    # 4. The backend's files: PLY and glTF.
    connection = runtime().connection
    snapshot = connection.call(p.MessageType.ATTACH, job_id=current.job_id).body["job"]
    for kind in ("ply", "glb"):
        ref_json = (snapshot.get("artifacts") or {}).get(kind)
        if ref_json is None:
            _say(f"the backend made no {kind} file")
            return 1
        download = ArtifactDownload(current.job_id, p.ArtifactRef.from_json(ref_json), out / f"{args.name}.{kind}")
        pump.process_pending(120, until=lambda: (download.step(connection), download.state)[1] != TransferState.RUNNING)
        if download.state != TransferState.DONE:
            _say(f"fetching the {kind} file failed: {download.error}")
            return 1
        _say(f"wrote {download.destination}")

    # 5. A picture: the point cloud and the result side by side, then the .blend.
    png = out / f"{args.name}.png"
    _render_side_by_side(scene, recon, current.final_object, png)
    _say(f"wrote {png}")
    blend = out / f"{args.name}.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    _say(f"wrote {blend}")
    return 0


def _render_side_by_side(scene, recon, mesh_name: str, path: Path) -> None:
    """Render the points alone and the mesh alone from the same photo's camera; save them side by side."""
    import bpy
    from PIL import Image

    camera = next(obj for obj in bpy.data.collections[recon.collection_name].all_objects if obj.type == "CAMERA")
    bpy.ops.carrara.look_through_camera(camera_name=camera.name)   # sets resolution and pixel aspect exactly
    scene.camera = camera
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 16
    scene.render.resolution_percentage = 100
    scene.render.film_transparent = False
    if scene.world is None:
        scene.world = bpy.data.worlds.new("Carrara example")
    scene.world.color = (0.8, 0.8, 0.8)
    sun = bpy.data.objects.new("Carrara example sun", bpy.data.lights.new("Carrara example sun", "SUN"))
    sun.data.energy = 3.0
    sun.rotation_euler = (0.8, 0.2, 0.6)
    scene.collection.objects.link(sun)
    points = bpy.data.objects[recon.points_object_name]
    mesh = bpy.data.objects[mesh_name]
    halves = []
    for shown, hidden in ((points, mesh), (mesh, points)):
        shown.hide_render, hidden.hide_render = False, True
        half = path.with_name(path.stem + f"_{len(halves)}.png")
        scene.render.filepath = str(half)
        bpy.ops.render.render(write_still=True)
        halves.append(np.asarray(Image.open(half).convert("RGB")))
        half.unlink()
    points.hide_render = mesh.hide_render = False
    Image.fromarray(np.concatenate(halves, axis=1)).save(path)


if __name__ == "__main__":
    sys.exit(main())
