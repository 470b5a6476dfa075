"""``carrara-backend`` as a person types it: defaults in ``--help``, typos caught before torch loads."""
from __future__ import annotations

import subprocess
import sys

import pytest

from carrara.backend import cli
from carrara.shared.jobs import ARTIST_FACE_BUDGET


@pytest.mark.parametrize("verb", ["serve", "train", "extract", "keys"])
def test_help_shows_the_defaults(verb, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main([verb, "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    if verb != "keys":
        assert "(default: auto)" in text                    # --device
    if verb == "extract":
        assert f"(default: {ARTIST_FACE_BUDGET})" in text and "--full" in text


@pytest.mark.parametrize("argv", [["train", "{missing}", "--out", "{tmp}/run"],
                                  ["extract", "{missing}", "--out", "{tmp}/mesh.ply"]])
def test_a_missing_path_is_reported_before_torch_loads(argv, tmp_path):
    missing = tmp_path / "no-such-dataset"
    args = [a.format(missing=missing, tmp=tmp_path) for a in argv]
    probe = ("import sys; from carrara.backend import cli; code = cli.main(sys.argv[1:]); "
             "print('torch loaded' if 'torch' in sys.modules else 'torch not loaded'); sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert f"{missing} does not exist" in done.stderr
    assert done.stdout.strip() == "torch not loaded"


def test_extract_refuses_faces_and_full_together(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(["extract", str(tmp_path), "--out", str(tmp_path / "m.ply"), "--faces", "10", "--full"])
    assert "not allowed with argument" in capsys.readouterr().err
