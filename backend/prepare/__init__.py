"""Photos or a video in, an undistorted PINHOLE COLMAP dataset out: Structure-from-Motion with pycolmap.

The stages, one module each: ``photos`` / ``video`` (what goes in), ``features``, ``pairs`` and ``matching``,
``mapping``, ``undistortion``; ``pipeline`` runs them in order in a work folder. The job kind is
``backend/jobs/prepare.py``, the CLI verb ``backend/cli/prepare.py``. Choices and their measured figures:
docs/photos-and-video.md.
"""
