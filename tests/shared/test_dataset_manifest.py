"""The prepared dataset's manifest: written from a folder, read back, and read as untrusted (a backend naming a file
outside the dataset folder is refused before anything is written)."""
from __future__ import annotations

import json

import pytest

from carrara.shared.checksum import file_sha256
from carrara.shared.dataset_manifest import (ManifestError, dataset_file_ref, manifest_entries, manifest_json,
                                             read_manifest)

SHA = "0" * 64


def test_a_dataset_folder_round_trips_through_its_manifest(tmp_path):
    dataset = tmp_path / "ds"
    (dataset / "sparse" / "0").mkdir(parents=True)
    (dataset / "images").mkdir()
    (dataset / "images" / "a.jpg").write_bytes(b"jpeg bytes")
    (dataset / "sparse" / "0" / "cameras.bin").write_bytes(b"\x01\x02")
    (tmp_path / "m.json").write_text(manifest_json(manifest_entries(dataset)))
    entries = read_manifest(tmp_path / "m.json")
    assert [(e.path, e.size) for e in entries] == [("images/a.jpg", 10), ("sparse/0/cameras.bin", 2)]
    assert entries[0].sha256 == file_sha256(dataset / "images" / "a.jpg")
    ref = dataset_file_ref(entries[0])
    assert ref.name == "dataset/images/a.jpg" and ref.size == 10 and ref.sha256 == entries[0].sha256


@pytest.mark.parametrize("name", ["../evil.jpg", "/etc/passwd", "images/../../x", "a\\b.jpg", "C:/x.jpg", "a//b",
                                  "./a", ""])
def test_a_path_leading_out_of_the_dataset_folder_is_refused(tmp_path, name):
    (tmp_path / "m.json").write_text(json.dumps({"files": [["images/ok.jpg", 1, SHA], [name, 1, SHA]]}))
    with pytest.raises(ManifestError, match="lead out of the dataset folder|is not \\[path"):
        read_manifest(tmp_path / "m.json")


@pytest.mark.parametrize("files", [[], [["a", -1, SHA]], [["a", 1, "xyz"]], [["a", 1.5, SHA]], [["a", 1]],
                                   [["a", 1, SHA], ["a", 1, SHA]], "nope"])
def test_a_malformed_manifest_is_refused_naming_it(tmp_path, files):
    (tmp_path / "m.json").write_text(json.dumps({"files": files}))
    with pytest.raises(ManifestError, match="m.json"):
        read_manifest(tmp_path / "m.json")
