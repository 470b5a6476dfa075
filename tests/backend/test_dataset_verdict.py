"""The dataset check job and the training loader give one verdict with one message on every input of the corpus."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from carrara.backend.data.dataset import DatasetError, load_dataset
from carrara.backend.jobs import check_dataset
from carrara.backend.cli.terminal import TerminalReporter
from carrara.backend.jobs.failure import JobFailed
from carrara.shared.jobs import CheckDatasetConfig, DatasetRef
from dataset_corpus import CORPUS, SPHERE, colmap_beside_broken_transforms, distortion
from testkit import ServerThread, shared_dataset, team_param


def check_job(path: Path, job_dir: Path) -> tuple[str | None, dict]:
    """Run the check job as the server does (on a terminal reporter); its failure message, or None, and report."""
    for folder in ("checkpoints", "artifacts"):
        (job_dir / folder).mkdir(parents=True)
    reporter = TerminalReporter(job_dir / "log.txt", io.StringIO())
    try:
        check_dataset.run(CheckDatasetConfig(DatasetRef(path=str(path))), job_dir, reporter, "cpu")
        message = None
    except JobFailed as failure:
        message = str(failure)
    return message, json.loads((job_dir / "artifacts" / check_dataset.REPORT_NAME).read_text())


def training(path: Path) -> tuple[str | None, list[str]]:
    """The training loader's refusal, or None and its warnings."""
    try:
        return None, load_dataset(path, sphere=SPHERE).warnings
    except DatasetError as refusal:
        return str(refusal), []


@pytest.mark.parametrize("make", CORPUS, ids=lambda make: make.__name__)
def test_check_and_training_give_one_verdict(tmp_path, make):
    path, fragment = make(tmp_path / "dataset")
    checked, report = check_job(path, tmp_path / "job")
    trained, warnings = training(path)
    assert checked == trained
    if fragment is None:
        assert checked is None and report["errors"] == 0 and report["verdict"] in ("ok", "warning")
        assert warnings[:report["warnings"]] == [f"{p['file']}: {p['problem']}" for p in report["problems"]]
    else:
        assert checked is not None and fragment in checked, checked
        assert checked.startswith(f"{path}: ") and " problem(s) would stop training, the first: " in checked
        assert report["verdict"] == "error" and report["errors"] >= 1


def test_the_colmap_model_comes_first_and_the_unused_transforms_json_is_named(tmp_path):
    path, _ = colmap_beside_broken_transforms(tmp_path / "dataset")
    _, report = check_job(path, tmp_path / "job")
    assert report["model_dir"] == str(path / "sparse" / "0") and report["photos"] == 3
    unused = [p for p in report["problems"] if p["file"] == str(path / "transforms.json")]
    assert [p["severity"] for p in unused] == ["warning"] and "the COLMAP model in" in unused[0]["problem"]


def test_every_problem_is_in_the_report_in_the_order_training_meets_them(tmp_path):
    path, _ = distortion(tmp_path / "dataset")
    (path / "images" / "img_002.png").unlink()
    checked, report = check_job(path, tmp_path / "job")
    assert [(p["severity"], Path(p["file"]).name) for p in report["problems"]] == [("error", "cameras.bin"),
                                                                                     ("error", "img_002.png")]
    assert checked == training(path)[0] and "2 problem(s)" in checked and "lens distortion" in checked


@pytest.mark.parametrize("name, path, fragment", [
    team_param("instant_ngp_fox", "transforms.json", "camera 1 (OPENCV) has lens distortion", data="instant_ngp_fox",
               id="fox"),
    team_param("nerf_synthetic_chair", "transforms_train.json", None, data="nerf_synthetic_chair", id="chair"),
])
def test_real_datasets_through_the_server_and_the_loader(tmp_path, name, path, fragment):
    """The fox (lens distortion, which the check once called a warning) fails both; the chair passes both."""
    from carrara.addon.client.connection import Connection
    from carrara.shared import protocol as p
    dataset = shared_dataset(name) / path
    with ServerThread(tmp_path / "workspace") as server:
        connection = Connection(server.address)
        connection.open()
        connection.wait_connected(30)
        job_id = connection.call(p.MessageType.SUBMIT, {"kind": "check_dataset",
                                                        "config": {"dataset": {"path": str(dataset)}}}).job_id
        connection.attach(job_id)
        snapshot = _wait_terminal(connection, job_id)
        connection.close()
    trained, _ = training(dataset) if fragment else (None, [])
    if fragment is None:
        assert snapshot["state"] == "finished", snapshot
        assert load_dataset(dataset, sphere=SPHERE, downscale=800 / 64).views
    else:
        assert snapshot["state"] == "failed" and snapshot["error"]["message"] == trained
        assert fragment in trained


def _wait_terminal(connection, job_id: str, timeout_s: float = 60.0) -> dict:
    import time
    from carrara.shared import protocol as p
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        connection.poll(0.05)
        job = connection.call(p.MessageType.ATTACH, job_id=job_id).body["job"]
        if job["state"] in ("finished", "failed", "cancelled", "interrupted"):
            return job
    raise AssertionError(f"job {job_id} did not end within {timeout_s} s")
