"""Choosing the hash-grid implementation (``--encoding``, ``ReconstructConfig.encoding``): auto's pick, clear errors
for what cannot run here, and a run that records its choice so resume and extract rebuild it, or fall back to one
that runs here (every implementation reads the same table layout)."""
from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from carrara.backend import cli
from carrara.backend.jobs.extract import load_trained_model
from carrara.backend.model.encoding_choice import (EncodingUnavailable, choose_encoding, encoding_for_checkpoint,
                                                   tcnn_import_error)
from carrara.backend.model.hashgrid import IMPLEMENTATIONS
from carrara.backend.train.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from carrara.backend.train.settings import TrainSettings
from carrara.shared.jobs import ENCODINGS, ReconstructConfig, config_from_json
from carrara.shared.protocol import ProtocolError
from engine_scenes import cached_scene

no_tcnn = pytest.mark.skipif(importlib.util.find_spec("tinycudann") is not None,
                             reason="tinycudann is installed here; these check the machine without it")
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without a CUDA GPU")


def test_the_protocol_names_every_implementation_the_model_has():
    assert set(ENCODINGS) == set(IMPLEMENTATIONS)


@no_cuda
def test_auto_takes_torch_on_the_cpu():
    assert choose_encoding("auto", "cpu") == "torch"
    assert choose_encoding("torch", torch.device("cpu")) == "torch"


@no_tcnn
def test_tcnn_without_tinycudann_names_the_option_and_how_to_install_it():
    assert tcnn_import_error() is not None
    with pytest.raises(EncodingUnavailable) as caught:
        choose_encoding("tcnn", "cuda")
    message = str(caught.value)
    assert message.startswith("encoding 'tcnn' (--encoding tcnn) needs tiny-cuda-nn")
    assert "pip install git+https://github.com/NVlabs/tiny-cuda-nn/#subdirectory=bindings/torch" in message
    assert "'auto'" in message


@no_cuda
def test_triton_without_cuda_is_a_clear_error():
    with pytest.raises(EncodingUnavailable, match=r"encoding 'triton' \(--encoding triton\) runs on a CUDA GPU.*"
                                                  r"this run is on cpu; use encoding 'auto' or 'torch'"):
        choose_encoding("triton", "cpu")


def test_an_unknown_encoding_is_refused():
    with pytest.raises(ValueError, match=r"encoding must be one of \['auto', 'tcnn', 'triton', 'torch'\]"):
        choose_encoding("cuda", "cpu")


def test_the_job_config_field_validates():
    config = ReconstructConfig()
    assert config.encoding == "auto"
    config.dataset.path = "/data/photos"
    for name in ENCODINGS:
        config.encoding = name
        config.validate()
    config.encoding = "tinycudann"
    with pytest.raises(ProtocolError, match=r"config field 'encoding' must be one of"):
        config.validate()
    assert config_from_json("reconstruct", {"dataset": {"path": "/data/photos"}, "encoding": "triton"}).encoding \
        == "triton"
    with pytest.raises(ProtocolError, match="'encoding'"):
        config_from_json("reconstruct", {"dataset": {"path": "/data/photos"}, "encoding": 3})


def test_the_train_verb_offers_every_encoding_and_refuses_others(capsys):
    assert cli._parser().parse_args(["train", "d", "--out", "o"]).encoding == "auto"
    assert cli._parser().parse_args(["train", "d", "--out", "o", "--encoding", "tcnn"]).encoding == "tcnn"
    with pytest.raises(SystemExit):
        cli._parser().parse_args(["train", "d", "--out", "o", "--encoding", "cuda"])
    assert "invalid choice: 'cuda'" in capsys.readouterr().err


@no_cuda
def test_a_checkpoint_rebuilds_its_encoding_where_it_runs_and_falls_back_where_not():
    assert encoding_for_checkpoint("torch", "auto", "cpu") == ("torch", None)
    assert encoding_for_checkpoint("auto", "auto", "cpu") == ("torch", None)   # before the choice was recorded
    chosen, note = encoding_for_checkpoint("triton", "auto", "cpu")
    assert chosen == "torch" and "trained with encoding 'triton', which does not run here" in note
    assert "same table layout" in note
    with pytest.raises(EncodingUnavailable, match="--encoding triton"):
        encoding_for_checkpoint("torch", "triton", "cpu")   # asked for by name: never a silent substitute


@no_tcnn
@no_cuda
def test_train_records_the_encoding_and_resume_and_extract_rebuild_from_the_checkpoint(tmp_path_factory, tmp_path):
    scene = cached_scene(tmp_path_factory)
    run = tmp_path / "run"
    base = ["train", str(scene.folder), "--out", str(run), "--preset", "ci", "--iters", "2", "--device", "cpu"]

    assert cli.main(base + ["--encoding", "tcnn"]) == 1
    assert "ERROR   encoding 'tcnn' (--encoding tcnn) needs tiny-cuda-nn" in (run / "log.txt").read_text()
    assert not list_checkpoints(run / "checkpoints")

    assert cli.main(base) == 0
    saved = json.loads((run / "config.json").read_text())
    assert saved["reconstruct"]["encoding"] == "auto" and saved["settings"]["model"]["sdf"]["encoding"] == "torch"
    (newest,) = list_checkpoints(run / "checkpoints")[-1:]
    state = load_checkpoint(newest)
    assert state["settings"]["model"]["sdf"]["encoding"] == "torch"

    # as if trained where tinycudann imports: the table is tcnn's layout, so it loads here into the torch path
    state["settings"]["model"]["sdf"]["encoding"] = "tcnn"
    save_checkpoint(state, run / "checkpoints", state["iteration"])
    model, _, _ = load_trained_model(run, "cpu")
    assert model.sdf_field.encoding.implementation == "torch"
    assert torch.equal(model.sdf_field.encoding.table, state["model"]["sdf_field.encoding.table"])
    assert TrainSettings.from_json(state["settings"]) == TrainSettings.from_json(saved["settings"])

    assert cli.main(base + ["--resume"]) == 0
    log = (run / "log.txt").read_text()
    assert "trained with encoding 'tcnn', which does not run here" in log and "continuing with 'torch'" in log
    assert json.loads((run / "config.json").read_text())["settings"]["model"]["sdf"]["encoding"] == "torch"
    assert cli.main(["extract", str(run), "--resolution", "32", "--out", str(tmp_path / "mesh.ply"),
                     "--device", "cpu"]) == 0
