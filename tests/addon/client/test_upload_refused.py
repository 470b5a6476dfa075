"""An upload the backend refuses (here a file name with a backslash, which no backend accepts) ends as a failed
transfer whose error carries the backend's message, instead of raising inside the pump's reply handling."""
from __future__ import annotations

import time

from carrara.addon.client.connection import Connection, ConnectionState
from carrara.addon.client.transfers import DatasetUpload, TransferState
from testkit import ServerThread


def test_a_refused_upload_fails_with_the_backends_message(tmp_path):
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"not really a png")
    with ServerThread(tmp_path / "workspace", uploads_only=True) as server:
        connection = Connection(server.address)
        connection.open()
        upload = DatasetUpload({"bad\\name.png": photo})
        deadline = time.monotonic() + 20
        while upload.state == TransferState.RUNNING and time.monotonic() < deadline:
            if connection.state == ConnectionState.CONNECTED:
                upload.step(connection)
            connection.poll(0.01)
        assert upload.state == TransferState.FAILED
        assert "backslash" in upload.error and upload.error.startswith("uploading 1 file(s)")
        connection.close()
