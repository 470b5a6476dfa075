"""The pinned set resolves on the public package index, for every platform and Python we support.

This machine's pip is configured with a local CPU build of torch, which hid a pin that PyPI's torch contradicts.
So pip runs ``--isolated`` (no configuration, no environment), resolving as a newcomer's machine would; pip can
only judge this platform's markers, so uv resolves the others (``--python-platform``). Only wheels are allowed:
everything must install without a compiler. These tests need the network to PyPI, as set-up does.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from testkit import REPO_ROOT

CONSTRAINTS = REPO_ROOT / "constraints.txt"
#: (Python, uv's platform, extras): the test environment (bpy exists for Python 3.11 only) on each platform the
#: backend has wheels for, and the backend alone (a GPU server's install) on 3.12 too.
TARGETS = [("3.11", "x86_64-manylinux_2_28", "test,triton"), ("3.11", "x86_64-pc-windows-msvc", "test"),
           ("3.11", "aarch64-apple-darwin", "test"), ("3.12", "x86_64-manylinux_2_28", ""),
           ("3.12", "x86_64-pc-windows-msvc", ""), ("3.12", "aarch64-apple-darwin", "")]


def _pinned() -> dict[str, str]:
    lines = [line.split("#")[0].strip() for line in CONSTRAINTS.read_text().splitlines()]
    return dict(line.split("==") for line in lines if line)


@pytest.mark.parametrize("extras", ["test,triton", ""], ids=["setup-sh", "gpu-server"])
def test_pip_resolves_the_readme_installs_on_the_public_index(dist, extras, tmp_path):
    requirement = f"{dist['wheel']}[{extras}]" if extras else str(dist["wheel"])
    report = tmp_path / "report.json"
    done = subprocess.run([sys.executable, "-m", "pip", "--isolated", "install", "--dry-run", "--ignore-installed",
                           "--only-binary=:all:", "--quiet", "--report", str(report), "-c", str(CONSTRAINTS),
                           requirement], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"the pinned set does not resolve on the public index:\n{done.stderr[-4000:]}"
    chosen = {item["metadata"]["name"].lower(): item["metadata"]["version"]
              for item in json.loads(report.read_text())["install"]}
    for name, version in _pinned().items():
        if name in chosen:
            assert chosen[name] == version, name
    assert chosen["torch"] == _pinned()["torch"] and chosen["triton"] == _pinned()["triton"]
    assert ("bpy" in chosen) == ("test" in extras)


@pytest.mark.parametrize("python,platform,extras", TARGETS, ids=[f"py{p}-{t}-{e or 'backend'}" for p, t, e in TARGETS])
def test_uv_resolves_every_supported_platform(python, platform, extras, tmp_path):
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    assert uv, "uv is missing: run scripts/setup.sh (it installs the test extras)"
    extra_args = [arg for extra in filter(None, extras.split(",")) for arg in ("--extra", extra)]
    env = dict(os.environ, MACOSX_DEPLOYMENT_TARGET="14.0", UV_CACHE_DIR=str(tmp_path / "uv-cache"))
    done = subprocess.run([uv, "pip", "compile", "--no-config", "--only-binary", ":all:", "--python-version", python,
                           "--python-platform", platform, "-c", str(CONSTRAINTS), *extra_args,
                           str(REPO_ROOT / "pyproject.toml"), "--no-header", "--no-annotate", "--quiet"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"no public install on Python {python}, {platform}:\n{done.stderr[-4000:]}"
    chosen = dict(line.split("==") for line in done.stdout.splitlines() if "==" in line)
    assert chosen["torch"] == _pinned()["torch"] and chosen["numpy"] == _pinned()["numpy"]
    assert ("triton" in chosen) == ("linux" in platform)
