"""Test set-up shared by every suite: an isolated Blender user folder before anything imports bpy; tests on the
team's ../shared/data deselected where it is absent."""
from __future__ import annotations

import os
import tempfile

# bpy reads this once, at import: keep Blender's user config and extensions out of the real home.
os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="carrara-bpy-user-"))


def pytest_configure(config):
    config.addinivalue_line("markers", "team_data(*names): reads these datasets of the team's ../shared/data "
                                       "(deselected where absent; a twin on the bundled chair runs everywhere)")


def pytest_collection_modifyitems(config, items):
    from testkit import deselect_absent_team_data
    deselect_absent_team_data(config, items)
