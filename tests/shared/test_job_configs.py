"""Job configs are checked field by field, and a bad field's error names it."""
import json

import pytest

from carrara.shared import jobs
from carrara.shared.protocol import ErrorCode, ProtocolError


def test_reconstruct_defaults_round_trip_through_json():
    config = jobs.config_from_json("reconstruct", {"dataset": {"path": "/data/chair"}, "sphere_radius": 2})
    again = jobs.config_from_json("reconstruct", json.loads(json.dumps(jobs.config_to_json(config))))
    assert again == config
    assert config.sphere_radius == 2 and config.preset == "standard" and config.export_formats == ["ply", "glb"]


def test_extract_needs_its_source_job_and_no_dataset():
    config = jobs.config_from_json("extract", {"source_job_id": "j7", "mesh_resolution": 768})
    assert (config.source_job_id, config.mesh_resolution) == ("j7", 768)
    with pytest.raises(ProtocolError, match="'source_job_id'"):
        jobs.config_from_json("extract", {})
    with pytest.raises(ProtocolError, match="'dataset' is not a extract setting"):
        jobs.config_from_json("extract", {"source_job_id": "j7", "dataset": {"path": "x"}})


@pytest.mark.parametrize("change, field", [
    ({"dataset": {}}, "dataset"),
    ({"dataset": {"path": "a", "upload_id": "b"}}, "dataset"),
    ({"dataset": {"path": ""}}, "dataset.path"),
    ({"dataset": {"url": "x"}}, "dataset"),
    ({"sphere_center": [0, 0]}, "sphere_center"),
    ({"sphere_center": [0, float("nan"), 0]}, "sphere_center"),
    ({"sphere_radius": 0}, "sphere_radius"),
    ({"sphere_radius": True}, "sphere_radius"),
    ({"scene_type": "garden"}, "scene_type"),
    ({"preset": "ultra"}, "preset"),
    ({"iterations": 0}, "iterations"),
    ({"iterations": 1.5}, "iterations"),
    ({"downscale": 0.5}, "downscale"),
    ({"preview_every_s": -1}, "preview_every_s"),
    ({"preview_resolution": 8}, "preview_resolution"),
    ({"mesh_resolution": 10_000}, "mesh_resolution"),
    ({"decimate_faces": -5}, "decimate_faces"),
    ({"texture": "yes"}, "texture"),
    ({"export_formats": ["obj"]}, "export_formats"),
    ({"colour": "red"}, "colour"),
])
def test_bad_reconstruct_fields_are_named(change, field):
    data = {"dataset": {"path": "/data/chair"}, **change}
    with pytest.raises(ProtocolError) as info:
        jobs.config_from_json("reconstruct", data)
    assert info.value.code == ErrorCode.BAD_FIELD
    assert f"'{field}'" in info.value.message


def test_unknown_kind_and_non_object_config():
    with pytest.raises(ProtocolError, match="'paint' is not one of"):
        jobs.config_from_json("paint", {})
    with pytest.raises(ProtocolError, match="'config' must be an object"):
        jobs.config_from_json("reconstruct", [1])
