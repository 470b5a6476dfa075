"""Undistort the instant-ngp fox for the real-capture benchmark (issue 4, 7d): its transforms.json describes an
OPENCV camera with lens distortion, which the engine refuses (it trains undistorted pinhole photos, as Neuralangelo
does). Runs here, on the CPU, with pycolmap; the result travels to the GPU machine.

    .venv/bin/python benchmarks/prepare_fox.py [--fox ../shared/data/instant_ngp_fox] [--out benchmarks/data/fox]

The frames are read with the one transforms.json reader (``shared/transforms_json.py``), written as a COLMAP
model with the one writer, and undistorted by COLMAP's own image undistorter (``pycolmap.undistort_images``):
``out/images`` and a PINHOLE model in ``out/sparse``. Then ``bench_quality.py --dataset out --name fox``.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import pycolmap

from carrara.shared.colmap import write_model
from carrara.shared.transforms_json import read_transforms

REPO_ROOT = Path(__file__).resolve().parent.parent


def prepare(fox: Path, out: Path) -> Path:
    rec, extras = read_transforms(fox)
    for warning in extras.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    out.parent.mkdir(parents=True, exist_ok=True)  # COLMAP's undistorter creates only the last folder
    with tempfile.TemporaryDirectory(prefix="carrara-fox-") as model:
        write_model(rec, model)
        pycolmap.undistort_images(out, model, rec.images_dir)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fox", type=Path, default=REPO_ROOT.parent / "shared" / "data" / "instant_ngp_fox")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "data" / "fox")
    args = parser.parse_args()
    if not (args.fox / "transforms.json").is_file():
        parser.error(f"{args.fox}: no transforms.json (point --fox at the instant_ngp_fox folder)")
    print(prepare(args.fox, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
