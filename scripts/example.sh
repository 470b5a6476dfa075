#!/usr/bin/env bash
# Set up on a fresh machine if needed, then run the main job on the bundled chair example, headless:
# import the COLMAP model into Blender, fit the sphere, start a local backend, reconstruct (GPU if present,
# else CPU), stream previews, import the final textured mesh, and write out/chair.blend, out/chair.png and
# the PLY/glTF files. Extra arguments go to scripts/run_example.py (e.g. --preset standard).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
export BLENDER_USER_RESOURCES="${BLENDER_USER_RESOURCES:-$(mktemp -d)}"
exec .venv/bin/python scripts/run_example.py "$@"
