"""The extension zip: its manifest follows Blender's rules, it holds only the extension, and real Blender installs it.

The build downloads the six pyzmq wheels from PyPI once (they are kept in wheels/) and runs once per session.
"""
from __future__ import annotations

import importlib.util
import re
import sys
import tomllib
import zipfile
from pathlib import Path

import bpy
import pytest

import addon_utils  # Blender's own module, importable once bpy is

from testkit import REPO_ROOT

MODULE = "bl_ext.user_default.carrara"
PLATFORM_TAGS = {"linux-x64": "manylinux_2_28_x86_64", "windows-x64": "win_amd64",
                 "macos-x64": "macosx_10_15_universal2", "macos-arm64": "macosx_10_15_universal2"}
ALLOWED_TOP = {"__init__.py", "blender_manifest.toml", "addon", "shared", "wheels"}
PANELS = ("CARRARA_PT_backend", "CARRARA_PT_jobs", "CARRARA_PT_reconstruction")
ROOMS = ("client", "operators", "panels", "properties", "scene")   # the add-on's sub-packages


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build_script = _load("build_extension_script", REPO_ROOT / "scripts" / "build_extension.py")
blender_ext = _load("blender_ext_cli", build_script.blender_ext_cli())  # Blender's own packaging rules


@pytest.fixture(scope="module")
def manifest() -> dict:
    return tomllib.loads((REPO_ROOT / "blender_manifest.toml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    return build_script.build_extension(tmp_path_factory.mktemp("dist"))


def test_manifest_fields(manifest):
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert manifest["schema_version"] == "1.0.0"
    assert manifest["id"] == "carrara" and manifest["name"] == "Carrara" and manifest["type"] == "add-on"
    assert manifest["version"] == pyproject["project"]["version"]
    assert manifest["maintainer"]
    tagline = manifest["tagline"]
    assert 0 < len(tagline) <= 64 and tagline[-1].isalnum(), tagline
    assert tuple(int(n) for n in manifest["blender_version_min"].split(".")) >= (4, 2, 0)
    assert manifest["license"] == ["SPDX:GPL-3.0-or-later"]
    assert set(manifest["platforms"]) == set(PLATFORM_TAGS)
    assert set(manifest["permissions"]) == {"network", "files"}
    for reason in manifest["permissions"].values():
        assert 0 < len(reason) <= 64 and reason[-1].isalnum(), reason


def test_pyzmq_wheels_cover_both_pythons_on_every_platform(manifest):
    wheels = [Path(w).name for w in manifest["wheels"]]
    assert all(re.fullmatch(r"pyzmq-26\.4\.0-cp31[13]-cp31[13]-[a-z0-9_]+\.whl", w) for w in wheels), wheels
    for platform, tag in PLATFORM_TAGS.items():
        for python in ("cp311", "cp313"):
            assert f"pyzmq-26.4.0-{python}-{python}-{tag}.whl" in wheels, (platform, python)
    # What Blender derives from the names decides which Blenders accept the extension: 4.2-5.0 and 5.1+.
    assert blender_ext.python_versions_from_wheels(wheels) == {(3, 11), (3, 13)}
    for wheel in wheels:
        platforms = blender_ext.blender_platforms_from_wheel_platform(wheel[:-4].split("-")[-1])
        assert set(platforms) <= set(manifest["platforms"]), wheel


def test_zip_holds_only_the_extension(package, manifest):
    for wheel in build_script.manifest_wheels():
        assert wheel.is_file(), f"{wheel} was not downloaded"
    with zipfile.ZipFile(package) as archive:
        names = archive.namelist()
    assert {name.split("/")[0] for name in names} <= ALLOWED_TOP, sorted(names)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or "/." in n or n.startswith(".")]
    assert {"__init__.py", "blender_manifest.toml", "addon/__init__.py", "addon/preferences.py",
            "shared/protocol.py", *(f"addon/{room}/__init__.py" for room in ROOMS)} <= set(names)
    assert sorted(n for n in names if n.startswith("wheels/")) == sorted(w.lstrip("./") for w in manifest["wheels"])
    on_disk = {p.relative_to(REPO_ROOT).as_posix() for d in ("addon", "shared") for p in (REPO_ROOT / d).rglob("*.py")
               if "__pycache__" not in p.parts}
    assert on_disk <= set(names), sorted(on_disk - set(names))


def _user_repo_index() -> int:
    repos = bpy.context.preferences.extensions.repos
    return next(i for i, repo in enumerate(repos) if repo.module == "user_default")


def test_blender_installs_and_enables_the_zip(package):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    try:
        result = bpy.ops.extensions.package_install_files(filepath=str(package), repo="user_default",
                                                          enable_on_install=True)
        assert result == {"FINISHED"}
        assert addon_utils.check(MODULE) == (True, True)
        installed = Path(sys.modules[MODULE].__file__).resolve()
        assert REPO_ROOT not in installed.parents, f"{installed} is the checkout, not the installed copy"
        for panel in PANELS:
            assert getattr(bpy.types, panel).is_registered, panel
        python = f"python{sys.version_info.major}.{sys.version_info.minor}"
        site = Path(bpy.utils.user_resource("EXTENSIONS")) / ".local" / "lib" / python / "site-packages"
        assert (site / "pyzmq-26.4.0.dist-info").is_dir(), "Blender did not unpack the bundled pyzmq wheel"
    finally:
        addon_utils.disable(MODULE, default_set=True)
        bpy.ops.extensions.package_uninstall(repo_index=_user_repo_index(), pkg_id="carrara")
    assert not hasattr(bpy.types, PANELS[0])
