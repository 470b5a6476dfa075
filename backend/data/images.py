"""Decoded photos within a memory budget, and random pixel batches drawn from them.

Photos are decoded once (downscaled, uint8) into one flat pixel buffer, because the photos of several cameras may
differ in size. Where they live depends on what fits:

1. all on the training device, when the memory plan leaves room (no copy per step);
2. all in host memory, when they fit the host budget (a few KB gathered and copied per step);
3. streamed: two chunks in host memory, training draws from one while a thread decodes the next, and they swap.
   Thousands of frames never exhaust host memory (Neuralangelo preloads every photo at full size, issue #178).

Sampling is uniform over the pixels of the photos resident now, with a CPU generator whose state a checkpoint
keeps, so a resumed run draws the same rays (streaming swaps follow a thread's timing, so only modes 1-2 replay
bit-exactly).
"""
from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image as PILImage

from .dataset import DatasetError, View

# A streamed chunk is used for at least this many batches before the next one replaces it.
MIN_BATCHES_PER_CHUNK = 50
DECODE_THREADS = 4


def default_host_budget() -> int:
    """Half the host memory available now: room for a streamed chunk and its successor, and for everything else."""
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") * 0.5)
    except (ValueError, OSError):
        return 4 << 30


def decode_photo(view: View, channels: int) -> np.ndarray:
    """(H, W, channels) uint8 at the view's (downscaled) size; DatasetError names an unreadable file."""
    try:
        with PILImage.open(view.path) as photo:
            photo = photo.convert("RGBA" if channels == 4 else "RGB")
            if photo.size != (view.width, view.height):
                # BOX averages every source pixel a target pixel covers: the exact area filter for downscaling.
                photo = photo.resize((view.width, view.height), PILImage.Resampling.BOX)
            return np.asarray(photo, dtype=np.uint8).reshape(view.height, view.width, channels)
    except (OSError, SyntaxError, ValueError, PILImage.DecompressionBombError) as exc:
        raise DatasetError(f"{view.path}: cannot be decoded ({exc})") from None


@dataclass
class PixelBatch:
    """Random pixels: which view, where (image coordinates of pixel centres), and their colour (and alpha)."""

    view: torch.Tensor        # (N,) int64 index into the dataset's views
    pixels: torch.Tensor      # (N, 2) float32 (x, y)
    rgb: torch.Tensor         # (N, 3) float32 in [0, 1]
    alpha: torch.Tensor | None  # (N,) float32 in [0, 1] when photos carry masks


@dataclass
class _Resident:
    """Photos decoded into one flat (P, C) buffer: photo k owns rows offsets[k]:offsets[k + 1]."""

    pixels: torch.Tensor      # (P, C) uint8 on the storage device
    offsets: torch.Tensor     # (K + 1,) int64, CPU
    widths: torch.Tensor      # (K,) int64, CPU
    view_ids: torch.Tensor    # (K,) int64, CPU

    @property
    def count(self) -> int:
        return int(self.offsets[-1])


def _photo_bytes(view: View, channels: int) -> int:
    return view.width * view.height * channels


class ImageStore:
    """The photos of ``view_ids`` (indices into ``views``), decoded within ``device_budget`` / ``host_budget`` bytes."""

    def __init__(self, views: list[View], view_ids: list[int], *, device: torch.device | str, use_alpha: bool,
                 device_budget: int, host_budget: int | None = None, seed: int = 0):
        if not view_ids:
            raise DatasetError("no photos to train on")
        self.views, self.view_ids = views, list(view_ids)
        self.device = torch.device(device)
        self.channels = 4 if use_alpha else 3
        self.host_budget = default_host_budget() if host_budget is None else int(host_budget)
        total = sum(_photo_bytes(views[i], self.channels) for i in self.view_ids)
        self._pool = ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="carrara-decode")
        self._next: Future | None = None
        self._batches_on_chunk = 0
        self._order_rng = np.random.default_rng(seed)
        if total <= device_budget:
            self.mode, self.storage = "device", self.device
        elif total <= self.host_budget:
            self.mode, self.storage = "host", torch.device("cpu")
        else:
            self.mode, self.storage = "stream", torch.device("cpu")
            biggest = max(_photo_bytes(views[i], self.channels) for i in self.view_ids)
            if 2 * biggest > self.host_budget:
                raise DatasetError(f"the host memory budget ({self.host_budget / 2**20:.0f} MiB) cannot hold two "
                                   f"photos of {biggest / 2**20:.0f} MiB; use a larger downscale")
        self._chunks = self._plan_chunks() if self.mode == "stream" else [self.view_ids]
        self._chunk_index = 0
        self.resident = self._decode(self._chunks[0])
        if self.mode == "stream":
            self._queue_next()

    @property
    def resident_bytes(self) -> int:
        return self.resident.pixels.numel()

    def _plan_chunks(self) -> list[list[int]]:
        """A fresh random split into chunks of at most half the host budget each (one trains, one loads)."""
        capacity = self.host_budget // 2
        chunks, current, used = [], [], 0
        for i in self._order_rng.permutation(self.view_ids).tolist():
            size = _photo_bytes(self.views[i], self.channels)
            if current and used + size > capacity:
                chunks.append(current)
                current, used = [], 0
            current.append(i)
            used += size
        chunks.append(current)
        return chunks

    def _decode(self, ids: list[int]) -> _Resident:
        sizes = [self.views[i].width * self.views[i].height for i in ids]
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        flat = np.empty((int(offsets[-1]), self.channels), np.uint8)

        def fill(k: int) -> None:
            flat[offsets[k]:offsets[k + 1]] = decode_photo(self.views[ids[k]], self.channels).reshape(-1, self.channels)

        for future in [self._pool.submit(fill, k) for k in range(len(ids))]:
            future.result()
        return _Resident(torch.from_numpy(flat).to(self.storage), torch.from_numpy(offsets),
                         torch.tensor([self.views[i].width for i in ids], dtype=torch.int64),
                         torch.tensor(ids, dtype=torch.int64))

    def _queue_next(self) -> None:
        self._chunk_index += 1
        if self._chunk_index >= len(self._chunks):
            self._chunks, self._chunk_index = self._plan_chunks(), 0
        ids = self._chunks[self._chunk_index]
        self._next = self._pool.submit(self._decode, ids)

    def _maybe_swap(self) -> None:
        if self._next is None or self._batches_on_chunk < MIN_BATCHES_PER_CHUNK or not self._next.done():
            return
        self.resident = self._next.result()    # re-raises a decoding error, naming the photo
        self._batches_on_chunk = 0
        self._queue_next()

    def sample(self, count: int, generator: torch.Generator) -> PixelBatch:
        """``count`` pixels drawn uniformly from the resident photos, on the training device."""
        if self.mode == "stream":
            self._maybe_swap()
            self._batches_on_chunk += 1
        res = self.resident
        flat = torch.randint(res.count, (count,), generator=generator, dtype=torch.int64)
        return self._gather(res, flat)

    def _gather(self, res: _Resident, flat: torch.Tensor) -> PixelBatch:
        slot = torch.searchsorted(res.offsets, flat, right=True) - 1
        local = flat - res.offsets[slot]
        width = res.widths[slot]
        pixels = torch.stack(((local % width).float() + 0.5, (local // width).float() + 0.5), -1)
        values = res.pixels[flat.to(self.storage)].to(self.device, non_blocking=True).float() / 255.0
        alpha = values[:, 3] if self.channels == 4 else None
        return PixelBatch(res.view_ids[slot].to(self.device), pixels.to(self.device), values[:, :3].contiguous(),
                          alpha)

    def fixed_sample(self, count: int, seed: int) -> PixelBatch:
        """The same pixels every call (validation): drawn with their own generator, never the training one."""
        generator = torch.Generator().manual_seed(seed)
        return self._gather(self.resident, torch.randint(self.resident.count, (count,), generator=generator))

    def close(self) -> None:
        if self._next is not None:
            self._next.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)
