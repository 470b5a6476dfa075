"""A dataset made in the job's folder, offered to a client on another machine: its files linked under
``artifacts/dataset/`` (hard links, so nothing is copied on one disk) and a manifest with each file's SHA-256,
which the client fetches as the job's ``dataset`` artifact and then fetches file by file (``shared/dataset_manifest``).
"""
from __future__ import annotations

import shutil
from pathlib import Path

from ...shared.dataset_manifest import ARTIFACT_FOLDER, MANIFEST_NAME, manifest_entries, manifest_json
from .linking import link_or_copy


def publish_dataset(dataset: Path, artifacts_dir: Path) -> Path:
    """Link ``dataset``'s files into ``artifacts_dir/dataset/`` and write the manifest beside; its path."""
    linked = artifacts_dir / ARTIFACT_FOLDER
    shutil.rmtree(linked, ignore_errors=True)        # a resumed or re-run job publishes afresh
    entries = manifest_entries(dataset)
    for entry in entries:
        link_or_copy(dataset / entry.path, linked / entry.path)
    manifest = artifacts_dir / MANIFEST_NAME
    staging = manifest.with_name(manifest.name + ".partial")
    staging.write_text(manifest_json(entries), encoding="utf-8")
    staging.replace(manifest)
    return manifest
