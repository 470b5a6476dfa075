"""Build the Blender extension zip (dist/carrara-<version>.zip) by the rules of ``blender --command extension build``.

The manifest (blender_manifest.toml at the repository root) is the one list of what ships: its ``wheels`` are
downloaded unmodified from PyPI into wheels/ (once; they are kept), and its ``[build]`` patterns keep only
``__init__.py``, ``addon/`` and ``shared/`` (the manifest and wheels are always included). The build and the checks
are Blender's own, from the CLI that ships inside the bpy wheel, so no Blender install is needed.

    .venv/bin/python scripts/build_extension.py [--output-dir dist]
"""
from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
MANIFEST = REPO_ROOT / "blender_manifest.toml"
# name-version-pythontag-abitag-platform.whl (PEP 427), e.g. pyzmq-26.4.0-cp311-cp311-win_amd64.whl
WHEEL_NAME = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)-cp(?P<major>\d)(?P<minor>\d+)-(?P<abi>[^-]+)-"
                        r"(?P<platform>[^-]+)\.whl$")


class BuildError(RuntimeError):
    """A step of the build failed; the message says which and why."""


def manifest_wheels(manifest_path: Path = MANIFEST) -> list[Path]:
    """The wheel files the manifest lists, as absolute paths."""
    manifest = tomllib.loads(manifest_path.read_text(encoding="utf-8"))
    return [(manifest_path.parent / entry).resolve() for entry in manifest.get("wheels", [])]


def download_wheel(path: Path) -> None:
    """Fetch exactly the wheel ``path`` names from PyPI (the only binary of that name, version, Python and platform)."""
    match = WHEEL_NAME.match(path.name)
    if match is None:
        raise BuildError(f"{MANIFEST.name}: {path.name} is not a CPython wheel name (name-version-cpXY-abi-platform)")
    python_version = f"{match['major']}.{match['minor']}"
    with tempfile.TemporaryDirectory(prefix="carrara-wheel-") as tmp:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                   f"{match['name']}=={match['version']}", "--python-version", python_version,
                   "--implementation", "cp", "--abi", match["abi"], "--platform", match["platform"], "--dest", tmp]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise BuildError(f"pip could not download {path.name}:\n{result.stderr.strip()}")
        fetched = Path(tmp) / path.name
        if not fetched.is_file():
            got = ", ".join(p.name for p in Path(tmp).iterdir()) or "nothing"
            raise BuildError(f"pip fetched {got} instead of {path.name}: fix the name in {MANIFEST.name}")
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(fetched), path)


def blender_ext_cli() -> Path:
    """blender_ext.py, the CLI behind ``blender --command extension``, from the installed bpy wheel."""
    spec = importlib.util.find_spec("bpy")  # finds the package without importing Blender
    if spec is None or not spec.submodule_search_locations:
        raise BuildError("the bpy module is not installed: run scripts/setup.sh (it installs the test extras)")
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
        if found:
            return found[-1]
    raise BuildError(f"no bl_pkg/cli/blender_ext.py inside the bpy package at {spec.submodule_search_locations}")


def run_blender_ext(*args: str) -> str:
    """Run one blender_ext.py sub-command; its own message is the error when it fails."""
    result = subprocess.run([sys.executable, str(blender_ext_cli()), *args], capture_output=True, text=True)
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        raise BuildError(f"blender_ext {args[0]} failed:\n{output}")
    return output


def build_extension(output_dir: Path = REPO_ROOT / "dist") -> Path:
    """Download missing wheels, validate the manifest, build the zip, validate the zip; returns the zip's path."""
    for wheel in manifest_wheels():
        if not wheel.is_file():
            download_wheel(wheel)
    run_blender_ext("validate", str(REPO_ROOT))
    manifest = tomllib.loads(MANIFEST.read_text(encoding="utf-8"))
    output_dir.mkdir(parents=True, exist_ok=True)
    package = output_dir / f"{manifest['id']}-{manifest['version']}.zip"
    run_blender_ext("build", "--source-dir", str(REPO_ROOT), "--output-filepath", str(package))
    run_blender_ext("validate", str(package))
    return package


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=REPO_ROOT / "dist", help="where the zip is written")
    args = parser.parse_args(argv)
    try:
        package = build_extension(args.output_dir.resolve())
    except BuildError as error:
        print(f"build_extension: {error}", file=sys.stderr)
        return 1
    print(package)
    return 0


if __name__ == "__main__":
    sys.exit(main())
