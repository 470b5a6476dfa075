"""Datasets a remote client sends: content-addressed blobs, resumable, and sent once however often they are used.

Flow: ``upload_begin`` names every file (path, size, sha256) and learns which blobs are missing and from which
offset to continue; ``upload_chunk`` appends bytes to one blob at exactly that offset; when a blob is complete its
SHA-256 is checked; ``upload_commit`` then materialises ``uploads/datasets/<upload_id>/`` from the blobs (hard
links where the filesystem allows) and a job names it with ``dataset.upload_id``.

Layout::

    <workspace>/uploads/blobs/<sha256>        complete, verified content
                        partial/<sha256>      content still arriving (its size is the resume offset)
                        manifests/<id>.json   the file list of an upload
                        datasets/<id>/...     the committed dataset folder
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ...shared.checksum import file_sha256
from ...shared.protocol import ErrorCode, ProtocolError
from .paths import confined_path, safe_relative_path
from .workspace import write_json_atomic

SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
UPLOAD_ID_PATTERN = re.compile(r"^u[0-9a-f]{32}$")
MAX_UPLOAD_FILES = 20_000
MAX_FILE_BYTES = 1 << 40
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def _bad(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_FIELD, message)


class UploadStore:
    """The uploads folder and the blob sizes announced since the server started."""

    def __init__(self, root: Path):
        self.root = root
        self.blobs, self.partial = root / "blobs", root / "partial"
        self.manifests, self.datasets = root / "manifests", root / "datasets"
        for folder in (self.blobs, self.partial, self.manifests, self.datasets):
            folder.mkdir(parents=True, exist_ok=True)
        self._sizes: dict[str, int] = {}   # sha256 -> size, from upload_begin

    def begin(self, files: Any) -> dict[str, Any]:
        """Record an upload's file list; answer which blobs are missing and from which offset."""
        entries = self._check_file_list(files)
        manifest = {"files": [[str(path), size, sha] for path, size, sha in entries]}
        upload_id = "u" + hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:32]
        write_json_atomic(self.manifests / f"{upload_id}.json", manifest)
        missing = []
        for sha, size in dict((sha, size) for _, size, sha in entries).items():
            self._sizes[sha] = size
            if (self.blobs / sha).exists():
                continue
            if size == 0:
                (self.blobs / sha).touch()
                continue
            partial = self.partial / sha
            offset = partial.stat().st_size if partial.exists() else 0
            if offset > size:      # a leftover from another announcement; start again
                partial.unlink()
                offset = 0
            missing.append({"sha256": sha, "offset": offset, "size": size})
        return {"upload_id": upload_id, "missing": missing, "files": len(entries),
                "bytes": sum(size for _, size, _ in entries)}

    def chunk(self, sha: Any, offset: Any, data: np.ndarray | None) -> dict[str, Any]:
        """Append ``data`` to blob ``sha`` at ``offset`` (which must be where the blob's bytes end now)."""
        if not isinstance(sha, str) or not SHA256_PATTERN.match(sha):
            raise _bad("body field 'sha256' must be 64 lowercase hex digits")
        if sha not in self._sizes:
            raise _bad(f"blob {sha[:12]}… was not announced; call upload_begin with its file first")
        if data is None or data.dtype != np.uint8 or data.ndim != 1:
            raise ProtocolError(ErrorCode.BAD_ARRAY, "upload_chunk needs one uint8 array named 'data'")
        size = self._sizes[sha]
        if (self.blobs / sha).exists():
            return {"sha256": sha, "offset": size, "size": size, "complete": True}
        partial = self.partial / sha
        current = partial.stat().st_size if partial.exists() else 0
        if offset != current:
            raise _bad(f"offset {offset} does not continue blob {sha[:12]}…, which holds {current} of {size} bytes; "
                       f"send from offset {current}")
        if current + data.nbytes > size:
            raise _bad(f"chunk of {data.nbytes} bytes at offset {current} runs past blob {sha[:12]}…'s "
                       f"declared size of {size} bytes")
        with open(partial, "ab") as handle:
            handle.write(memoryview(data))
        current += data.nbytes
        if current == size:
            actual = file_sha256(partial)
            if actual != sha:
                partial.unlink()
                raise _bad(f"blob content hashes to {actual[:12]}…, not the announced {sha[:12]}…; "
                           "it was discarded, send it again from offset 0")
            os.replace(partial, self.blobs / sha)
        return {"sha256": sha, "offset": current, "size": size, "complete": current == size}

    def commit(self, upload_id: Any) -> dict[str, Any]:
        """Build the dataset folder of a fully uploaded file list."""
        manifest = self._manifest(upload_id)
        entries = manifest["files"]
        incomplete = [path for path, _, sha in entries if not (self.blobs / sha).exists()]
        if incomplete:
            raise ProtocolError(ErrorCode.BAD_STATE, f"{len(incomplete)} of {len(entries)} files are not fully "
                                                     f"uploaded yet, e.g. {incomplete[0]!r}; send their chunks first")
        target = self.datasets / upload_id
        if not target.exists():
            staging = self.datasets / f".{upload_id}.{os.getpid()}.tmp"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir()
            for path, _, sha in entries:
                destination = confined_path(staging, safe_relative_path(path, "file path"), "file path")
                destination.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(self.blobs / sha, destination)
                except OSError:    # no hard links on this filesystem: copy
                    shutil.copyfile(self.blobs / sha, destination)
            os.replace(staging, target)
        return {"upload_id": upload_id, "complete": True, "files": len(entries)}

    def dataset_path(self, upload_id: str) -> Path:
        """The committed folder of an upload, or BAD_FIELD naming the field a job config got wrong."""
        target = self.datasets / upload_id if UPLOAD_ID_PATTERN.match(upload_id) else None
        if target is None or not target.is_dir():
            raise _bad(f"config field 'dataset.upload_id' {upload_id!r} is not a committed upload; "
                       "finish upload_commit first")
        return target

    def _manifest(self, upload_id: Any) -> dict[str, Any]:
        if not isinstance(upload_id, str) or not UPLOAD_ID_PATTERN.match(upload_id):
            raise _bad("body field 'upload_id' must be an id returned by upload_begin")
        try:
            return json.loads((self.manifests / f"{upload_id}.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise _bad(f"upload {upload_id!r} is unknown; call upload_begin first") from None

    @staticmethod
    def _check_file_list(files: Any) -> list[tuple[str, int, str]]:
        if not isinstance(files, list) or not files:
            raise _bad("body field 'files' must be a non-empty list of [path, size, sha256]")
        if len(files) > MAX_UPLOAD_FILES:
            raise ProtocolError(ErrorCode.OVERSIZED, f"{len(files)} files, over {MAX_UPLOAD_FILES} per upload")
        entries, seen = [], set()
        for index, item in enumerate(files):
            where = f"files[{index}]"
            if not isinstance(item, list) or len(item) != 3:
                raise _bad(f"{where} must be [path, size, sha256]")
            path = str(safe_relative_path(item[0], f"{where} path"))
            size, sha = item[1], item[2]
            if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_FILE_BYTES:
                raise _bad(f"{where} ({path}): size must be a whole number of bytes from 0 to {MAX_FILE_BYTES}")
            if not isinstance(sha, str) or not SHA256_PATTERN.match(sha):
                raise _bad(f"{where} ({path}): sha256 must be 64 lowercase hex digits")
            if size == 0 and sha != EMPTY_SHA256:
                raise _bad(f"{where} ({path}): an empty file's sha256 is {EMPTY_SHA256}")
            if path in seen:
                raise _bad(f"{where}: {path!r} is listed twice")
            seen.add(path)
            entries.append((path, size, sha))
        folders = {str(parent) for path in seen for parent in _parent_folders(path)}
        clash = sorted(seen & folders)
        if clash:
            raise _bad(f"{clash[0]!r} is listed as a file and used as a folder")
        entries.sort()
        return entries


def _parent_folders(path: str) -> list[str]:
    """'a/b/c.jpg' -> ['a', 'a/b']."""
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]
