"""``preset_with``: one field of a preset changed from text, as the benchmarks' ``--set`` does for an A/B."""
from __future__ import annotations

import pytest

from carrara.backend.train.presets import preset, preset_with
from carrara.backend.train.settings import build_settings


def test_fields_change_at_any_depth_and_parse_as_the_value_they_replace():
    base = preset("standard")
    changed = preset_with(base, {"losses.curvature": "1e-3", "grid_in_feature": "false",
                                 "schedule.lr_steps": "0.6,0.8", "sampling.n_guided": "24", "iterations": "500"})
    assert changed.losses.curvature == 1e-3 and changed.losses.eikonal == base.losses.eikonal
    assert changed.grid_in_feature is False and changed.schedule.lr_steps == (0.6, 0.8)
    assert changed.sampling.n_guided == 24 and isinstance(changed.sampling.n_guided, int)
    assert changed.iterations == 500 and base.losses.curvature == 5e-4      # the table's preset is untouched
    assert preset_with(base, {}) == base


def test_a_changed_preset_builds_the_settings_it_implies():
    plain = build_settings(preset("ci"), scene_type="object", use_alpha=True, n_views=10, plan=None)
    without = build_settings(preset_with(preset("ci"), {"grid_in_feature": "false"}), scene_type="object",
                             use_alpha=True, n_views=10, plan=None)
    assert without.model.color.feature_dim == plain.model.color.feature_dim - 4 * 2   # no hash features to colour


@pytest.mark.parametrize("change, words", [
    ({"losses.curvatur": "1"}, "LossWeights has no field 'curvatur'"),
    ({"losses": "1"}, "losses is a group of settings"),
    ({"iterations.count": "1"}, "iterations is the value 11000, not a group"),
    ({"grid_in_feature": "maybe"}, "grid_in_feature='maybe': expected a value like True"),
    ({"losses.curvature": "lots"}, "losses.curvature='lots'"),
])
def test_a_wrong_change_names_the_field_and_what_it_takes(change, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        preset_with(preset("standard"), change)
