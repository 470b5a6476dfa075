"""The wheel and sdist hold every module of the add-on, the backend and the protocol, and nothing else."""
from __future__ import annotations

import tarfile
import zipfile

from testkit import REPO_ROOT

SHIPPED = ("addon", "backend", "shared")


def _modules_on_disk() -> set[str]:
    found = {"__init__.py"}
    for top in SHIPPED:
        found |= {p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / top).rglob("*.py")
                  if "__pycache__" not in p.parts}
    return found


def test_the_wheel_holds_every_module_as_carrara(dist):
    names = set(zipfile.ZipFile(dist["wheel"]).namelist())
    modules = {name.removeprefix("carrara/") for name in names if name.startswith("carrara/")}
    assert _modules_on_disk() <= modules, sorted(_modules_on_disk() - modules)
    assert not {m for m in modules if m.split("/")[0] in ("tests", "benchmarks", "scripts", "examples")}
    assert {n.split("/")[0] for n in names} == {"carrara", dist["wheel"].name.split("-py3")[0] + ".dist-info"}


def test_the_wheel_declares_the_command_and_the_pinned_dependencies(dist):
    archive = zipfile.ZipFile(dist["wheel"])
    info = dist["wheel"].name.split("-py3")[0] + ".dist-info"
    assert "carrara-backend = carrara.backend.cli:main" in archive.read(f"{info}/entry_points.txt").decode()
    metadata = archive.read(f"{info}/METADATA").decode()
    for requirement in ("torch", "pycolmap", "pyzmq", "av"):
        assert f"Requires-Dist: {requirement}" in metadata, requirement


def test_the_sdist_holds_every_module(dist):
    with tarfile.open(dist["sdist"]) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert _modules_on_disk() <= names, sorted(_modules_on_disk() - names)
    assert {"pyproject.toml", "setup.py", "README.md"} <= names
