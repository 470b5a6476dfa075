"""The list of a prepared dataset's files that a backend publishes so a client on another machine can fetch them.

A ``prepare`` job that keeps its dataset in its own folder (no ``output_path``: a remote backend) links every file
of the dataset under ``artifacts/dataset/`` and publishes ``dataset_manifest.json`` as its ``dataset`` artifact:
``{"files": [[relative/path, size, sha256], ...]}``. The client fetches the manifest like any artifact, then each
file as the ArtifactRef ``dataset_file_ref`` gives, so every byte is checked by the one fetch path. A manifest is
read as untrusted input: each path must stay inside the folder it is fetched into. Stdlib only.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from .checksum import file_sha256
from .protocol import ArtifactRef

MANIFEST_KIND = "dataset"                 # the artifact kind of the manifest
MANIFEST_NAME = "dataset_manifest.json"
REPORT_NAME = "prepare_report.json"   # beside every prepared dataset: what the run did
ARTIFACT_FOLDER = "dataset"               # the dataset's files, under the job's artifacts/
DATASET_FILE_KIND = "dataset_file"
MAX_FILES = 100_000
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ManifestError(ValueError):
    """A manifest that cannot be trusted or read; the message names the entry."""


@dataclass(frozen=True)
class ManifestEntry:
    path: str          # '/'-separated, relative to the dataset folder
    size: int
    sha256: str


def manifest_entries(dataset: Path) -> list[ManifestEntry]:
    """Every file under ``dataset``, in path order, with its size and SHA-256."""
    files = sorted(p for p in dataset.rglob("*") if p.is_file())
    return [ManifestEntry(p.relative_to(dataset).as_posix(), p.stat().st_size, file_sha256(p)) for p in files]


def manifest_json(entries: list[ManifestEntry]) -> str:
    return json.dumps({"files": [[e.path, e.size, e.sha256] for e in entries]}, separators=(",", ":"))


def read_manifest(path: Path) -> list[ManifestEntry]:
    """The entries of a fetched manifest; raises ManifestError naming the first entry that is unusable."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{path} is not a dataset manifest: {exc}") from None
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, list) or not files or len(files) > MAX_FILES:
        raise ManifestError(f"{path}: 'files' must list 1 to {MAX_FILES} files")
    entries, seen = [], set()
    for item in files:
        if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str) and type(item[1]) is int
                and item[1] >= 0 and isinstance(item[2], str) and _SHA256.match(item[2])):
            raise ManifestError(f"{path}: the entry {str(item)[:120]} is not [path, size, sha256]")
        _check_relative(path, item[0])
        if item[0] in seen:
            raise ManifestError(f"{path}: {item[0]!r} is listed twice")
        seen.add(item[0])
        entries.append(ManifestEntry(*item))
    return entries


def _check_relative(manifest: Path, name: str) -> None:
    """A path that cannot lead out of the folder it is written into, on any platform."""
    if "\\" in name or ":" in name or name.startswith("/") or any(part in ("", ".", "..") for part in name.split("/")):
        raise ManifestError(f"{manifest}: the file {name!r} would lead out of the dataset folder; the backend's "
                            "manifest is refused")


def dataset_file_ref(entry: ManifestEntry) -> ArtifactRef:
    """The artifact a dataset file is fetched as."""
    return ArtifactRef(name=f"{ARTIFACT_FOLDER}/{entry.path}", size=entry.size, sha256=entry.sha256,
                       kind=DATASET_FILE_KIND, iteration=0, stats={})
