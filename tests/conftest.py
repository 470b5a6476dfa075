"""Test set-up shared by every suite: an isolated Blender user folder before anything imports bpy."""
from __future__ import annotations

import os
import tempfile

# bpy reads this once, at import: keep Blender's user config and extensions out of the real home.
os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="carrara-bpy-user-"))
