"""The GPU server's Dockerfile agrees with the project: same torch as the pins, files that exist, a command the
CLI accepts. (No Docker engine runs on CI machines, so the image itself is not built here.)"""
from __future__ import annotations

import json
import re

from carrara.backend import cli
from testkit import REPO_ROOT

DOCKERFILE = REPO_ROOT / "deploy" / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    return [tuple(line.split(None, 1)) for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_the_base_image_carries_the_pinned_torch():
    pins = dict(line.split("==") for line in (REPO_ROOT / "constraints.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    image = next(value for word, value in _instructions() if word == "ARG" and value.startswith("PYTORCH_IMAGE="))
    assert re.fullmatch(rf"PYTORCH_IMAGE=pytorch/pytorch:{re.escape(pins['torch'])}-cuda[\d.]+-cudnn\d+-runtime",
                        image), image


def test_every_copied_path_exists_and_passes_the_dockerignore():
    ignore = (REPO_ROOT / ".dockerignore").read_text().split()
    for word, value in _instructions():
        if word == "COPY" and not value.startswith("--from"):
            for source in value.split()[:-1]:
                assert (REPO_ROOT / source).exists(), source
                assert f"!{source.rstrip('/')}" in ignore or f"!{source.rstrip('/')}/" in ignore, source


def test_the_default_command_is_one_the_cli_accepts():
    entry = json.loads(next(value for word, value in _instructions() if word == "ENTRYPOINT"))
    command = json.loads(next(value for word, value in _instructions() if word == "CMD"))
    assert entry == ["carrara-backend"]
    args = cli._parser().parse_args(command)
    assert args.verb == "serve" and args.keys is not None and args.uploads_only and "0.0.0.0" in args.bind
