"""Real COLMAP models for tests, made by pycolmap itself: every camera model, several cameras, rigs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pycolmap

ALL_MODEL_NAMES = [name for name in pycolmap.CameraModelId.__members__ if name != "INVALID"]


def camera_params(model_name: str, width: int = 640, height: int = 480, focal: float = 500.0) -> list[float]:
    """Plausible parameters for ``model_name``: pycolmap's defaults with small non-zero distortion."""
    model = pycolmap.CameraModelId.__members__[model_name]
    params = np.array(pycolmap.Camera.create_from_model_id(1, model, focal, width, height).params)
    if model_name not in ("EQUIRECTANGULAR", "EUCM"):
        for k, i in enumerate(pycolmap.Camera.create_from_model_id(1, model, focal, width, height)
                              .extra_params_idxs()):
            params[i] = 0.01 * (k + 1)
    return params.tolist()


def synthetic_model(model_name: str = "PINHOLE", params: list[float] | None = None, *, rigs: int = 2,
                    cameras_per_rig: int = 1, frames_per_rig: int = 3, points: int = 60,
                    width: int = 640, height: int = 480, seed: int = 0) -> pycolmap.Reconstruction:
    """A pycolmap reconstruction with exact observations: ``rigs * cameras_per_rig`` cameras."""
    pycolmap.set_random_seed(seed)
    options = pycolmap.SyntheticDatasetOptions()
    options.num_rigs = rigs
    options.num_cameras_per_rig = cameras_per_rig
    options.num_frames_per_rig = frames_per_rig
    options.num_points3D = points
    options.camera_width, options.camera_height = width, height
    options.camera_model_id = pycolmap.CameraModelId.__members__[model_name]
    options.camera_params = params if params is not None else camera_params(model_name, width, height)
    return pycolmap.synthesize_dataset(options)


def write_pycolmap(rec: pycolmap.Reconstruction, folder: Path, binary: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (rec.write_binary if binary else rec.write_text)(str(folder))
    return folder
