"""Which images to match with which: the choice that decides how SfM's time grows with the number of images.

- exhaustive: every pair; the most robust, quadratic in time, right for small unordered sets.
- sequential: each image with its next ``SEQUENTIAL_OVERLAP`` neighbours in name (capture) order and with
  neighbours at powers of two further on, plus every pair of ``LOOP_KEYFRAMES`` evenly spaced keyframes: those
  close loops (a walk around an object comes back to its start) without a vocabulary tree, which would have to
  be downloaded at run time. Near-linear in time; right for video and for large photo sets named in capture order.
"""
from __future__ import annotations

from itertools import combinations

EXHAUSTIVE_MAX_PHOTOS = 80     # auto: exhaustive up to this many photos (3,160 pairs), sequential beyond
SEQUENTIAL_OVERLAP = 10
LOOP_KEYFRAMES = 30


def choose_matcher(asked: str, from_video: bool, count: int) -> str:
    if asked != "auto":
        return asked
    return "sequential" if from_video or count > EXHAUSTIVE_MAX_PHOTOS else "exhaustive"


def image_pairs(names: list[str], matcher: str) -> list[tuple[str, str]]:
    """The pairs to match, each once, in a stable order."""
    ordered = sorted(names)
    if matcher == "exhaustive":
        return list(combinations(ordered, 2))
    if matcher != "sequential":
        raise ValueError(f"unknown matcher {matcher!r}")
    count = len(ordered)
    index_pairs: set[tuple[int, int]] = set()
    for i in range(count):
        for step in range(1, SEQUENTIAL_OVERLAP + 1):
            if i + step < count:
                index_pairs.add((i, i + step))
        step = 2 * SEQUENTIAL_OVERLAP
        while i + step < count:
            index_pairs.add((i, i + step))
            step *= 2
    keyframes = sorted({round(k * (count - 1) / max(LOOP_KEYFRAMES - 1, 1)) for k in range(LOOP_KEYFRAMES)})
    index_pairs.update(combinations(keyframes, 2))
    return [(ordered[i], ordered[j]) for i, j in sorted(index_pairs) if i != j]
