"""Match and geometrically verify the chosen image pairs, in batches so that progress (matched pairs k/N) and
cancel reach the artist; on the GPU when pycolmap has CUDA. One path for every matcher: ``pairs`` chose them."""
from __future__ import annotations

import math
from pathlib import Path

import pycolmap

from .features import BATCHES
from .progress import StageProgress, watched
from .stage_reporter import StageReporter

MIN_BATCH_PAIRS = 200           # each batch reloads descriptors: keep batches large enough to amortise that


def match_pairs(database: Path, pairs: list[tuple[str, str]], work: Path, *, device: pycolmap.Device,
                reporter: StageReporter) -> int:
    """Match ``pairs`` into ``database``; returns the number of geometrically verified pairs."""
    total = len(pairs)
    batch = max(MIN_BATCH_PAIRS, math.ceil(total / BATCHES))
    pairs_file = work / "pairs.txt"
    matching = pycolmap.FeatureMatchingOptions()
    progress = StageProgress(reporter, "matching", total)
    progress.update(0)
    for start in range(0, total, batch):
        chunk = pairs[start:start + batch]
        pairs_file.write_text("".join(f"{a} {b}\n" for a, b in chunk), encoding="utf-8")
        pairing = pycolmap.ImportedPairingOptions()
        pairing.match_list_path = pairs_file
        with watched(reporter) as token:
            pycolmap.match_image_pairs(database, matching_options=matching, pairing_options=pairing,
                                       device=device, cancellation_token=token)
        progress.update(start + len(chunk))
    with pycolmap.Database.open(database) as db:
        verified = db.num_verified_image_pairs()
    reporter.log(f"matching: {total:,} pairs matched, {verified:,} verified")
    return verified
