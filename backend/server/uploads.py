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
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from ...shared.atomic_write import write_json_atomic
from ...shared.checksum import file_sha256
from ...shared.protocol import ErrorCode, ProtocolError
from .paths import confined_path, safe_relative_path
from .quotas import Quotas

SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
UPLOAD_ID_PATTERN = re.compile(r"^u[0-9a-f]{32}$")
MAX_UPLOAD_FILES = 20_000
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
#: Announced blob sizes remembered (the oldest are forgotten first; upload_begin announces them again).
ANNOUNCED_BLOBS_KEPT = MAX_UPLOAD_FILES
#: ``missing`` entries one UPLOAD_STATUS lists; ``missing_total`` counts all, and upload_begin again lists the rest.
MISSING_LISTED = 1000


def _bad(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_FIELD, message)


class UploadStore:
    """The uploads folder and the blob sizes announced since the server started."""

    def __init__(self, root: Path, quotas: Quotas = Quotas()):
        self.root = root
        self.quotas = quotas
        self.blobs, self.partial = root / "blobs", root / "partial"
        self.manifests, self.datasets = root / "manifests", root / "datasets"
        for folder in (self.blobs, self.partial, self.manifests, self.datasets):
            folder.mkdir(parents=True, exist_ok=True)
        self._sizes: OrderedDict[str, int] = OrderedDict()   # sha256 -> size, from upload_begin, newest last

    @staticmethod
    def file_list_from_array(data: np.ndarray) -> Any:
        """The file list of an upload_begin that sent it as array ``files`` (UTF-8 JSON), for lists too long for
        a header."""
        if data.dtype != np.uint8 or data.ndim != 1:
            raise ProtocolError(ErrorCode.BAD_ARRAY, "array 'files' must be uint8 bytes of a JSON list")
        try:
            return json.loads(data.tobytes().decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise _bad("array 'files' is not UTF-8 JSON: send the list of [path, size, sha256]") from None

    def begin(self, files: Any) -> dict[str, Any]:
        """Record an upload's file list; answer which blobs are missing and from which offset."""
        entries = self._check_file_list(files)
        self._check_quota(entries)
        manifest = {"files": [[str(path), size, sha] for path, size, sha in entries]}
        upload_id = "u" + hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:32]
        write_json_atomic(self.manifests / f"{upload_id}.json", manifest)
        missing = []
        for sha, size in dict((sha, size) for _, size, sha in entries).items():
            self._sizes[sha] = size
            self._sizes.move_to_end(sha)
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
        while len(self._sizes) > ANNOUNCED_BLOBS_KEPT:
            self._sizes.popitem(last=False)
        return {"upload_id": upload_id, "missing": missing[:MISSING_LISTED], "missing_total": len(missing),
                "files": len(entries), "bytes": sum(size for _, size, _ in entries)}

    def _check_quota(self, entries: list[tuple[str, int, str]]) -> None:
        """Refuse an upload past the blob, upload or store quota before a byte of it is sent."""
        quotas = self.quotas
        for path, size, _ in entries:
            if size > quotas.blob_bytes:
                raise ProtocolError(ErrorCode.QUOTA, f"{path!r} is {size} bytes, over this backend's limit of "
                                                     f"{quotas.blob_bytes} bytes per file")
        blobs = dict((sha, size) for _, size, sha in entries)
        total = sum(blobs.values())
        if total > quotas.upload_bytes:
            raise ProtocolError(ErrorCode.QUOTA, f"the upload is {total} bytes, over this backend's limit of "
                                                 f"{quotas.upload_bytes} bytes per upload")
        new = sum(size for sha, size in blobs.items() if sha not in self._sizes and not (self.blobs / sha).exists())
        held = self._stored_bytes()
        if held + new > quotas.store_bytes:
            raise ProtocolError(ErrorCode.QUOTA, f"the backend holds {held} bytes of uploads; {new} more would pass "
                                                 f"its limit of {quotas.store_bytes}: remove old jobs and uploads "
                                                 "(prune) first")

    def _stored_bytes(self) -> int:
        """Bytes of the complete blobs plus the announced size of every blob still expected (only announced blobs
        take chunks, so this bounds what the store can come to hold)."""
        with os.scandir(self.blobs) as entries:
            complete = {entry.name: entry.stat().st_size for entry in entries if entry.is_file()}
        expected = sum(size for sha, size in self._sizes.items() if sha not in complete)
        return sum(complete.values()) + expected

    def prune(self, in_use: set[str | None], cutoff: float) -> list[str]:
        """Remove uploads no job names whose manifest was last announced before ``cutoff`` (seconds since the
        epoch), then every blob or partial blob no remaining manifest lists; the removed upload ids."""
        removed = []
        for manifest in self.manifests.glob("u*.json"):
            upload_id = manifest.stem
            if upload_id in in_use or manifest.stat().st_mtime >= cutoff:
                continue
            shutil.rmtree(self.datasets / upload_id, ignore_errors=True)
            manifest.unlink(missing_ok=True)
            removed.append(upload_id)
        listed: set[str] = set()
        for manifest in self.manifests.glob("u*.json"):
            try:
                listed.update(sha for _, _, sha in json.loads(manifest.read_text(encoding="utf-8"))["files"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
        for folder in (self.blobs, self.partial):
            for blob in folder.iterdir():
                if blob.name not in listed:
                    blob.unlink(missing_ok=True)
        for sha in [sha for sha in self._sizes if sha not in listed]:
            del self._sizes[sha]
        return sorted(removed)

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
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise _bad(f"{where} ({path}): size must be a whole number of bytes")
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
