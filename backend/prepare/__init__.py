"""Photos or a video in, an undistorted PINHOLE COLMAP dataset out: Structure-from-Motion with pycolmap.

The stages, one module each: ``photos`` / ``video`` (what goes in), ``features``, ``pairs`` and ``matching``,
``mapping``, ``undistortion``; ``pipeline`` runs them in order in a work folder, ``run`` is the job kind and
the CLI verb. Choices and their measured figures: docs/photos-and-video.md.
"""
