"""How close a Structure-from-Motion model's cameras are to ground-truth cameras, in the issue's two figures.

- Camera centres after the best similarity transform (Umeyama: rotation, translation, scale) from the model to
  the ground truth, as a percentage of the scene's extent: the diagonal of the ground-truth centres' bounding box.
- Relative rotations between every pair of cameras (R_j R_i^T), compared with the ground truth's: the worst and
  the mean angle in degrees. They need no alignment, so they judge orientation alone.

Both models are read with the one COLMAP reader (``carrara.shared.colmap``); cameras pair up by image name.

    python benchmarks/pose_accuracy.py MODEL GROUND_TRUTH
"""
from __future__ import annotations

import json
import sys
from itertools import combinations
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _bootstrap import ensure_carrara_importable
    ensure_carrara_importable()

from carrara.shared.camera_convention import camera_centers, qvec_to_rotmat  # noqa: E402
from carrara.shared.colmap import read_model  # noqa: E402


def pose_errors(model_path: str | Path, ground_truth_path: str | Path) -> dict[str, float]:
    """Centre and relative-rotation errors of the images both models hold, and how many they share."""
    model, truth = read_model(model_path), read_model(ground_truth_path)
    ours = {image.name: image for image in model.images.values()}
    theirs = {image.name: image for image in truth.images.values()}
    names = sorted(set(ours) & set(theirs))
    if len(names) < 3:
        raise ValueError(f"{model_path} and {ground_truth_path} share {len(names)} image names; 3 are needed")
    centres = [camera_centers(np.array([m[n].qvec for n in names]), np.array([m[n].tvec for n in names]))
               for m in (ours, theirs)]
    aligned = _similarity(centres[0], centres[1])
    extent = float(np.linalg.norm(centres[1].max(0) - centres[1].min(0)))
    errors = np.linalg.norm(aligned - centres[1], axis=1) / extent * 100
    rotations = [[qvec_to_rotmat(m[n].qvec) for n in names] for m in (ours, theirs)]
    angles = []
    for i, j in combinations(range(len(names)), 2):
        relative = [r[j] @ r[i].T for r in rotations]
        cosine = (np.trace(relative[0].T @ relative[1]) - 1) / 2
        angles.append(float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))))
    return {"shared_images": len(names), "centre_error_mean_pct": float(errors.mean()),
            "centre_error_max_pct": float(errors.max()), "rotation_error_worst_pair_deg": max(angles),
            "rotation_error_mean_pair_deg": float(np.mean(angles)), "extent": extent}


def _similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``source`` points moved by the least-squares similarity onto ``target`` (Umeyama 1991)."""
    mu_s, mu_t = source.mean(0), target.mean(0)
    s, t = source - mu_s, target - mu_t
    u, sigma, vt = np.linalg.svd(t.T @ s / len(source))
    d = np.eye(3)
    d[2, 2] = np.sign(np.linalg.det(u @ vt))
    rotation = u @ d @ vt
    scale = np.trace(np.diag(sigma) @ d) / (s ** 2).sum(1).mean()
    return (scale * (rotation @ s.T)).T + mu_t


if __name__ == "__main__":
    print(json.dumps(pose_errors(sys.argv[1], sys.argv[2]), indent=2))
