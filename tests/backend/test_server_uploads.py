"""Datasets sent to the backend: content-addressed (the same content is sent once), resumable after a dropped
connection, checked against SHA-256, and confined to the workspace."""
import hashlib
import os
import time
from pathlib import Path

import numpy as np
import pytest

from carrara.addon.client.connection import Connection, RemoteError
from carrara.addon.client.transfers import DatasetUpload, TransferState
from carrara.shared import protocol as p
from testkit import ServerThread, connect_client, write_colmap_dataset


def _files(root: Path) -> list[str]:
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file())


def _upload(root: Path, names: list[str], **options) -> DatasetUpload:
    return DatasetUpload({name: root / name for name in names}, **options)


def _run(upload: DatasetUpload, connection: Connection, stop=lambda: False, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while upload.state == TransferState.RUNNING and not stop():
        assert time.monotonic() < deadline, "upload timed out"
        upload.step(connection)
        connection.poll(0.01)


@pytest.fixture
def server(tmp_path):
    with ServerThread(tmp_path / "workspace") as running:
        yield running


def test_upload_then_check_then_upload_again_sends_nothing(server, tmp_path):
    dataset = write_colmap_dataset(tmp_path / "dataset", 4)
    connection = connect_client(server.address)
    upload = _upload(dataset, _files(dataset))
    _run(upload, connection)
    assert upload.state == TransferState.DONE, upload.error
    # the 4 photos are one content: it travels once
    photo = (dataset / "images" / "img_001.png").stat().st_size
    model = sum((dataset / "sparse" / "0" / name).stat().st_size for name in os.listdir(dataset / "sparse" / "0"))
    assert upload.bytes_sent == photo + model
    committed = server.server.workspace.uploads_dir / "datasets" / upload.upload_id
    assert _files(committed) == _files(dataset)
    assert (committed / "images" / "img_004.png").read_bytes() == (dataset / "images" / "img_004.png").read_bytes()

    reply = connection.call(p.MessageType.SUBMIT, {"kind": "check_dataset",
                                                   "config": {"dataset": {"upload_id": upload.upload_id}}})
    assert reply.body["job"]["config"]["dataset"] == {"path": None, "upload_id": upload.upload_id}
    deadline = time.monotonic() + 30
    while connection.call(p.MessageType.ATTACH, job_id=reply.job_id).body["job"]["state"] not in ("finished",
                                                                                                   "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert connection.call(p.MessageType.ATTACH, job_id=reply.job_id).body["job"]["state"] == "finished"

    again = _upload(dataset, _files(dataset))
    _run(again, connection)
    assert (again.state, again.upload_id, again.bytes_sent) == (TransferState.DONE, upload.upload_id, 0)
    connection.close()


def test_an_upload_cut_short_resumes_from_the_offset_the_backend_holds(server, tmp_path):
    folder = tmp_path / "dataset"
    folder.mkdir()
    content = np.random.default_rng(7).integers(0, 256, 300_000, np.uint8).tobytes()
    (folder / "photo.jpg").write_bytes(content)
    connection = connect_client(server.address)
    first = _upload(folder, ["photo.jpg"], window=1, chunk_bytes=50_000)
    _run(first, connection, stop=lambda: first.bytes_sent >= 100_000)
    connection.poll(0.05)
    connection.close()                                     # the link drops mid-file
    assert first.state == TransferState.RUNNING

    connection = connect_client(server.address)
    second = _upload(folder, ["photo.jpg"], window=1, chunk_bytes=50_000)
    _run(second, connection)
    assert second.state == TransferState.DONE, second.error
    assert 0 < second.bytes_sent <= len(content) - 50_000  # only what had not arrived
    committed = server.server.workspace.uploads_dir / "datasets" / second.upload_id / "photo.jpg"
    assert committed.read_bytes() == content

    # the same upload object also survives a reconnect of its own connection
    (folder / "other.jpg").write_bytes(content[::-1])
    third = _upload(folder, ["other.jpg"], window=1, chunk_bytes=50_000)
    _run(third, connection, stop=lambda: third.bytes_sent >= 100_000)
    connection.open()
    connection.wait_connected(30)
    _run(third, connection)
    assert third.state == TransferState.DONE, third.error
    committed = server.server.workspace.uploads_dir / "datasets" / third.upload_id / "other.jpg"
    assert committed.read_bytes() == content[::-1]
    connection.close()


def test_chunks_are_checked_for_offset_size_and_content(server):
    connection = connect_client(server.address)
    data = b"0123456789"
    sha = hashlib.sha256(data).hexdigest()
    begun = connection.call(p.MessageType.UPLOAD_BEGIN, {"files": [["a/b.txt", 10, sha]]}).body
    assert begun["missing"] == [{"sha256": sha, "offset": 0, "size": 10}]

    def chunk(offset, payload):
        return connection.call(p.MessageType.UPLOAD_CHUNK, {"sha256": sha, "offset": offset},
                               arrays={"data": np.frombuffer(payload, np.uint8)})

    with pytest.raises(RemoteError, match="send from offset 0"):
        chunk(4, data[4:])
    assert chunk(0, data[:4]).body == {"sha256": sha, "offset": 4, "size": 10, "complete": False}
    with pytest.raises(RemoteError, match="runs past"):
        chunk(4, b"x" * 7)
    with pytest.raises(RemoteError, match="not fully uploaded yet, e.g. 'a/b.txt'"):
        connection.call(p.MessageType.UPLOAD_COMMIT, {"upload_id": begun["upload_id"]})
    with pytest.raises(RemoteError, match="it was discarded, send it again from offset 0"):
        chunk(4, b"XXXXXX")                                 # right size, wrong content
    again = connection.call(p.MessageType.UPLOAD_BEGIN, {"files": [["a/b.txt", 10, sha]]}).body
    assert again["missing"][0]["offset"] == 0 and again["upload_id"] == begun["upload_id"]
    assert chunk(0, data).body["complete"] is True
    committed = connection.call(p.MessageType.UPLOAD_COMMIT, {"upload_id": begun["upload_id"]}).body
    assert committed == {"upload_id": begun["upload_id"], "complete": True, "files": 1}
    root = server.server.workspace.uploads_dir / "datasets" / begun["upload_id"]
    assert (root / "a" / "b.txt").read_bytes() == data
    connection.close()


def test_an_empty_file_needs_no_chunk(server, tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    connection = connect_client(server.address)
    upload = _upload(tmp_path, ["empty.txt"])
    _run(upload, connection)
    assert (upload.state, upload.bytes_sent) == (TransferState.DONE, 0)
    assert (server.server.workspace.uploads_dir / "datasets" / upload.upload_id / "empty.txt").read_bytes() == b""
    connection.close()


def test_an_upload_of_thousands_of_photos_goes_through(server, tmp_path):
    """3,000 files: the list is longer than a header may be, and more blobs are missing than one reply lists."""
    folder = tmp_path / "many"
    folder.mkdir()
    names = [f"images/a_long_photo_name_as_cameras_write_them_{index:05d}.jpg" for index in range(3000)]
    (folder / "images").mkdir()
    for index, name in enumerate(names):
        (folder / name).write_bytes(index.to_bytes(4, "little"))
    connection = connect_client(server.address)
    upload = _upload(folder, names, window=8)
    _run(upload, connection, timeout_s=90)
    assert upload.state == TransferState.DONE, upload.error
    assert upload.bytes_sent == 4 * 3000
    committed = server.server.workspace.uploads_dir / "datasets" / upload.upload_id
    assert (committed / names[-1]).read_bytes() == (2999).to_bytes(4, "little")
    connection.close()
