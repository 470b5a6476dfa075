"""Helpers the suites share: real data (the bundled chair, datasets made from it, the team's larger ones), free
loopback ports, backends, scenes and layouts, and Triton's interpreter."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import types
from pathlib import Path
from typing import Callable

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("CARRARA_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
#: The bundled CC-0 example every clone has: 60 RGBA renders of the NeRF-synthetic chair and an exact COLMAP model.
EXAMPLE_CHAIR = REPO_ROOT / "examples" / "chair"


def shared_dataset(name: str) -> Path:
    """Path of a dataset in the team's ../shared/data, for a test marked ``team_data(name)`` (see below); a test that
    is not marked skips with the reason when it is absent."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real dataset {name!r} not found at {path} (set CARRARA_SHARED_DATA to the team's shared/data)")
    return path


def team_param(*values, data: str, id: str | None = None):
    """A parameter that reads the team's dataset ``data``: extra coverage beside a twin on the bundled chair."""
    return pytest.param(*values, marks=pytest.mark.team_data(data), id=id)


def deselect_absent_team_data(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the tests marked ``team_data`` whose datasets are absent, with one line that says so.

    A public clone has no ../shared/data; every such test has a twin on the bundled or generated data that runs
    everywhere, so reporting them as skips would only bury the skips that matter (no GPU) among them.
    """
    absent: set[str] = set()
    kept, deselected = [], []
    for item in items:
        missing = {name for mark in item.iter_markers("team_data") for name in mark.args
                   if not (SHARED_DATA / name).is_dir()}
        absent |= missing
        (deselected if missing else kept).append(item)
    if not deselected:
        return
    config.hook.pytest_deselected(items=deselected)
    items[:] = kept
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"{len(deselected)} tests on the team's data deselected: {', '.join(sorted(absent))} not "
                            f"found in {SHARED_DATA} (set CARRARA_SHARED_DATA to the team's shared/data)")


def real_colmap_model(name: str) -> Path:
    """A real COLMAP model folder: ``chair`` (bundled) or ``fountain`` (the team's 1536x1024 photos; skips if
    absent)."""
    if name == "chair":
        return EXAMPLE_CHAIR / "sparse" / "0"
    return shared_dataset("strecha_fountain_p11") / "colmap_gt_poses" / "sparse" / "0"


# --- transforms.json and COLMAP captures made from the bundled chair ----------------------------------------------

def write_chair_transforms(folder: Path, photos: str = "images",
                           keep_photo: Callable[[int], bool] = lambda index: True) -> Path:
    """The bundled chair as ``folder/transforms.json``, written by Carrara's own writer from its COLMAP model (the one
    camera conversion), photos copied into ``folder/<photos>``: only frame ``index``es ``keep_photo`` accepts."""
    import numpy as np
    from carrara.shared import colmap
    from carrara.shared.sphere import BoundingSphere
    from carrara.shared.transforms_json import write_transforms
    rec = colmap.read_model(EXAMPLE_CHAIR / "sparse" / "0")
    rec.images_dir = folder / photos
    rec.images_dir.mkdir(parents=True)
    for index, image in enumerate(sorted(rec.images.values(), key=lambda im: im.name)):  # the writer's frame order
        if keep_photo(index):
            shutil.copyfile(EXAMPLE_CHAIR / "images" / image.name, rec.images_dir / image.name)
    path = folder / "transforms.json"
    assert write_transforms(path, rec, BoundingSphere(np.zeros(3), 1.5)) == []
    return path


def write_nerf_synthetic_chair(folder: Path) -> Path:
    """The bundled chair in the NeRF-synthetic vocabulary, like the team's ``nerf_synthetic_chair``:
    ``transforms_train.json`` with only ``camera_angle_x`` (the size comes from the PNGs) and extension-less
    ``./train/r_N`` paths."""
    written = write_chair_transforms(folder, photos="train")
    meta = json.loads(written.read_text())
    written.unlink()
    frames = [{"file_path": "./" + frame["file_path"].removesuffix(".png"),
               "transform_matrix": frame["transform_matrix"]} for frame in meta["frames"]]
    path = folder / "transforms_train.json"
    path.write_text(json.dumps({"camera_angle_x": meta["camera_angle_x"], "frames": frames}, indent=2))
    return path


#: The lens distortion (OPENCV k1, k2, p1, p2) written into the instant-ngp-style chair: the fox's own.
INSTANT_NGP_DISTORTION = {"k1": 0.0578421, "k2": -0.0805099, "p1": -0.000980296, "p2": 0.00015575}


def write_instant_ngp_chair(folder: Path, distortion: dict[str, float] = INSTANT_NGP_DISTORTION) -> Path:
    """The bundled chair as instant-ngp leaves a capture, like the team's fox: global intrinsics with lens
    ``distortion``, ``aabb_scale`` 4, no sphere, and 60 frames listed for 45 photos (every fourth frame's photo is
    absent)."""
    path = write_chair_transforms(folder, keep_photo=lambda index: index % 4 != 1)
    meta = json.loads(path.read_text())
    for key in ("sphere_center", "sphere_radius", "aabb_range"):
        del meta[key]
    meta.update(distortion, aabb_scale=4.0)
    path.write_text(json.dumps(meta, indent=2))
    return path


def write_chair_in_colmap_frame(folder: Path) -> Path:
    """The bundled chair as a COLMAP run leaves a capture: the same cameras and points moved by a similarity
    (pycolmap's own) into a world that is rotated (up is no longer +z), scaled and off-centre; ``folder`` holds
    ``sparse/0`` and ``images`` (a link to the bundled photos)."""
    import numpy as np
    import pycolmap
    rec = pycolmap.Reconstruction(str(EXAMPLE_CHAIR / "sparse" / "0"))
    tilt = pycolmap.Rotation3d(np.array([1.2, 0.3, -0.4]))   # axis-angle: up becomes mostly -y, as COLMAP often has it
    rec.transform(pycolmap.Sim3d(2.5, tilt, np.array([3.0, -1.0, 7.5])))
    model = folder / "sparse" / "0"
    model.mkdir(parents=True)
    rec.write_binary(str(model))
    (folder / "images").symlink_to(EXAMPLE_CHAIR / "images", target_is_directory=True)
    return folder


def free_tcp_port() -> int:
    """A loopback port free right now, for a server a test starts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- backends and datasets for the server, connection and pump tests ---------------------------------------------

def start_backend(workspace: Path, port: int, *extra: str, env: dict[str, str] | None = None) -> "subprocess.Popen":
    """A real ``python -m carrara.backend serve`` on loopback (``env``: variables to add to this process's); its
    output goes to ``<workspace>.log``."""
    import subprocess
    import sys
    log = open(f"{workspace}.log", "ab")
    try:
        return subprocess.Popen([sys.executable, "-m", "carrara.backend", "serve", "--bind", f"tcp://127.0.0.1:{port}",
                                 "--workspace", str(workspace), *extra], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    finally:
        log.close()


def connect_client(address: str, timeout_s: float = 30.0) -> "Connection":
    """The add-on's own Connection to a server under test, connected."""
    from carrara.addon.client.connection import Connection
    connection = Connection(address)
    connection.open()
    connection.wait_connected(timeout_s)
    return connection


def job_events(connection: "Connection", job_id: str, done: Callable[[list[dict]], bool],
               timeout_s: float = 60.0) -> list[dict]:
    """Event bodies of ``job_id`` as they arrive, until ``done(events)`` holds."""
    import time
    from carrara.shared import protocol as p
    events: list[dict] = []
    deadline = time.monotonic() + timeout_s
    while not done(events):
        assert time.monotonic() < deadline, f"timed out; events so far: {events[-5:]}"
        events += [m.body for m in connection.poll(0.01) if m.type == p.MessageType.EVENT and m.job_id == job_id]
    return events


def stop_process(process: "subprocess.Popen", timeout_s: float = 20.0) -> int:
    """SIGTERM the process by its PID, SIGKILL it if it has not exited within ``timeout_s``; its exit code."""
    import subprocess
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout_s)
    return process.returncode


class ServerThread:
    """The real job server, run on a thread of the test process (fast to start; stopped like SIGTERM does)."""

    def __init__(self, workspace: Path, port: int | None = None, keys_dir: Path | None = None,
                 host: str = "127.0.0.1", uploads_only: bool = False):
        import threading
        from carrara.backend.server.app import Server
        self.port = port or free_tcp_port()
        self.address = f"tcp://127.0.0.1:{self.port}"      # where clients connect
        self.server = Server(f"tcp://{host}:{self.port}", workspace, keys_dir, uploads_only=uploads_only)
        self.status: int | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.status = self.server.run()

    def stop(self, timeout_s: float = 30.0) -> None:
        self.server.stop()
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "the server thread did not stop"

    def __enter__(self) -> "ServerThread":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def write_colmap_dataset(root: Path, count: int, size: tuple[int, int] = (64, 48)) -> Path:
    """A COLMAP workspace written by pycolmap: ``root/sparse/0`` with ``count`` posed PINHOLE images and
    ``root/images/img_NNN.png``, all hard links of one PNG of ``size`` (so a large size is cheap to write but
    takes real time to decode, which gives a dataset check something to do)."""
    import numpy as np
    import pycolmap
    from PIL import Image
    width, height = size
    rec = pycolmap.Reconstruction()
    rec.add_camera_with_trivial_rig(pycolmap.Camera(model="PINHOLE", width=width, height=height,
                                                    params=[width, width, width / 2, height / 2], camera_id=1))
    for image_id in range(1, count + 1):
        pose = pycolmap.Rigid3d(pycolmap.Rotation3d(np.array([0.0, 0.0, 0.0, 1.0])), np.array([0.0, 0.0, 4.0]))
        rec.add_image_with_trivial_frame(pycolmap.Image(name=f"img_{image_id:03d}.png", camera_id=1,
                                                        image_id=image_id), pose)
    rec.add_point3D(np.array([0.0, 0.0, 0.0]), pycolmap.Track(), np.array([200, 100, 50], np.uint8))
    (root / "sparse" / "0").mkdir(parents=True)
    rec.write(str(root / "sparse" / "0"))
    images = root / "images"
    images.mkdir()
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[::7] = 255
    first = images / "img_001.png"
    Image.fromarray(pixels).save(first)
    for image_id in range(2, count + 1):
        os.link(first, images / f"img_{image_id:03d}.png")
    return root


def sphere_mesh(subdivisions: int = 3) -> "MeshData":
    """A coloured icosphere-like mesh (octahedron subdivided and pushed onto the unit sphere)."""
    import numpy as np
    from carrara.shared.mesh_data import MeshData
    vertices = [np.array(v, float) for v in ((1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1))]
    faces = [(0, 2, 4), (2, 1, 4), (1, 3, 4), (3, 0, 4), (2, 0, 5), (1, 2, 5), (3, 1, 5), (0, 3, 5)]
    for _ in range(subdivisions):
        midpoints: dict = {}

        def middle(a: int, b: int) -> int:
            key = (min(a, b), max(a, b))
            if key not in midpoints:
                vertices.append((vertices[a] + vertices[b]) / 2)
                midpoints[key] = len(vertices) - 1
            return midpoints[key]

        faces = [tri for a, b, c in faces for tri in ((a, middle(a, b), middle(c, a)), (b, middle(b, c), middle(a, b)),
                                                      (c, middle(c, a), middle(b, c)),
                                                      (middle(a, b), middle(b, c), middle(c, a)))]
    points = np.array(vertices, np.float32)
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    colors = np.concatenate([((points + 1) * 127).astype(np.uint8), np.full((len(points), 1), 255, np.uint8)], 1)
    return MeshData(points, np.array(faces, np.int32), colors)


def finished_job_with_mesh(workspace_root: Path, mesh: "MeshData", state: str = "finished") -> tuple[str, dict]:
    """A job folder as a reconstruction leaves it: its final mesh written through the server's real Reporter
    (JobContext) and its state saved; returns the job id and the final mesh's ArtifactRef JSON."""
    import threading
    from carrara.backend.server.job_context import JobContext
    from carrara.backend.server.workspace import Workspace
    workspace = Workspace(workspace_root)
    record = workspace.create_job("reconstruct", {"dataset": {"path": str(workspace_root), "upload_id": None}})
    events: list = []
    context = JobContext(record, workspace, threading.RLock(), events.append, threading.Event())
    context.mesh("final_mesh", mesh, 500)
    record.set_state(state, "test fixture")
    workspace.save(record)
    return record.job_id, events[-1].body["artifact"]


class RecordingLayout:
    """Records every layout call (label, prop, operator, progress, ...); sub-layouts record into the same list."""

    def __init__(self, calls=None):
        self.calls = [] if calls is None else calls

    def __getattr__(self, name):
        def record(*args, **kwargs):
            self.calls.append((name, args, kwargs))
            if name in ("row", "column", "box", "split"):
                return RecordingLayout(self.calls)
            if name == "operator":
                properties = types.SimpleNamespace()
                self.calls.append(("operator properties", (args[0],), {"properties": properties}))
                return properties
            return None
        return record

    def texts(self, kind="label"):
        return [kwargs.get("text", "") for name, _, kwargs in self.calls if name == kind]

    def operators(self):
        return [(args[0], vars(kwargs["properties"])) for name, args, kwargs in self.calls
                if name == "operator properties"]


def draw_panel(panel) -> RecordingLayout:
    """Run a Panel class's real ``draw`` into a RecordingLayout (there is no UI under the bpy module)."""
    import bpy
    layout = RecordingLayout()
    panel.draw(types.SimpleNamespace(layout=layout), bpy.context)
    return layout


def run_in_triton_interpreter(script: str) -> str:
    """Runs ``script`` (a test file that is also a script) with TRITON_INTERPRET=1, which triton reads when it is
    imported and which must not leak into other tests, so in a child process; returns its stdout. Skips where
    triton is not installed."""
    if importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed (pip install triton), so its kernels cannot be interpreted")
    env = dict(os.environ, TRITON_INTERPRET="1")
    result = subprocess.run([sys.executable, script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"interpreter checks failed:\n{result.stdout}\n{result.stderr[-4000:]}"
    return result.stdout
