"""The wheel and sdist, built once per session from the checkout as a user's pip would build them."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from testkit import REPO_ROOT


@pytest.fixture(scope="session")
def dist(tmp_path_factory) -> dict[str, Path]:
    """``{"wheel": ..., "sdist": ...}``: ``python -m build`` as a release does it: the sdist from the checkout, then
    the wheel from the unpacked sdist (so a file the sdist forgets breaks the wheel), each in an isolated build
    environment."""
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(REPO_ROOT)],
                          cwd=out, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return {"wheel": next(out.glob("carrara-*.whl")), "sdist": next(out.glob("carrara-*.tar.gz"))}
