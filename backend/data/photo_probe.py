"""The one photo reader the dataset check and training judge photos with (Pillow only: the check runs without torch).

It decodes every byte, so a truncated file fails the check and training before the first iteration, not hours in.
"""
from __future__ import annotations

from pathlib import Path

from PIL import Image as PILImage

_ALPHA_MODES = ("RGBA", "LA", "PA")


class PhotoProbe:
    """A ``shared.dataset_source.PhotoReader`` that also remembers which photos carry an alpha channel."""

    def __init__(self) -> None:
        self.has_alpha: dict[Path, bool] = {}

    def __call__(self, path: Path) -> tuple[int, int]:
        try:
            with PILImage.open(path) as photo:
                photo.load()
                self.has_alpha[path] = photo.mode in _ALPHA_MODES or (photo.mode == "P"
                                                                      and "transparency" in photo.info)
                return photo.size
        except (SyntaxError, PILImage.DecompressionBombError) as exc:     # Pillow's other ways of saying "unreadable"
            raise OSError(str(exc)) from None
