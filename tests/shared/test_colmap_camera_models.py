"""The camera-model table against pycolmap's own: ids, names, parameter order, focal and principal point."""
import numpy as np
import pycolmap
import pytest

from carrara.shared import camera_models as cm
from colmap_models import ALL_MODEL_NAMES, camera_params


def test_table_lists_exactly_pycolmaps_models():
    assert sorted(m.name for m in cm.CAMERA_MODELS) == sorted(ALL_MODEL_NAMES)


@pytest.mark.parametrize("name", ALL_MODEL_NAMES)
def test_ids_and_parameter_names_match_pycolmap(name):
    model_id = pycolmap.CameraModelId.__members__[name]
    camera = pycolmap.Camera.create_from_model_id(1, model_id, 500.0, 640, 480)
    ours = cm.model_by_name(name)
    assert ours.model_id == int(model_id.value)
    assert cm.model_by_id(ours.model_id) is ours
    assert ours.param_names == tuple(p.strip() for p in camera.params_info.split(","))
    assert ours.num_params == len(camera.params)


@pytest.mark.parametrize("name", [n for n in ALL_MODEL_NAMES if n != "EQUIRECTANGULAR"])
def test_pinhole_intrinsics_match_pycolmap(name):
    params = camera_params(name)
    params[cm.model_by_name(name).param_names.index("cx")] = 301.5
    camera = pycolmap.Camera.create_from_model_id(1, pycolmap.CameraModelId.__members__[name], 500.0, 640, 480)
    camera.params = params
    fx, fy, cx, cy = cm.pinhole_intrinsics(name, np.array(params))
    assert (fx, fy, cx, cy) == (camera.focal_length_x, camera.focal_length_y, camera.principal_point_x,
                                camera.principal_point_y)


def test_spherical_model_has_no_pinhole_intrinsics():
    with pytest.raises(ValueError, match="spherical"):
        cm.pinhole_intrinsics("EQUIRECTANGULAR", np.array([640.0, 480.0]))


@pytest.mark.parametrize("name", ALL_MODEL_NAMES)
def test_pinhole_equivalence_agrees_with_projecting(name):
    """A camera is pinhole-equivalent exactly when pycolmap projects like K on off-axis points."""
    model = cm.model_by_name(name)
    for params in (camera_params(name), _zero_distortion(name)):
        camera = pycolmap.Camera.create_from_model_id(1, pycolmap.CameraModelId.__members__[name], 500.0, 640,
                                                      480)
        camera.params = params
        rays = np.array([[0.3, -0.2, 1.0], [-0.4, 0.35, 1.0], [0.1, 0.45, 1.0]])
        if model.family == cm.SPHERICAL_FAMILY:
            matches = False
        else:
            fx, fy, cx, cy = cm.pinhole_intrinsics(name, np.array(params))
            pinhole = rays[:, :2] / rays[:, 2:] * [fx, fy] + [cx, cy]
            matches = np.allclose(camera.img_from_cam(rays), pinhole, rtol=0, atol=1e-6)
        assert cm.is_pinhole_equivalent(name, np.array(params)) == matches, (name, params)


def _zero_distortion(name):
    params = camera_params(name)
    model = cm.model_by_name(name)
    for distortion in model.distortion_names:
        params[model.param_names.index(distortion)] = 0.0
    return params


def test_unknown_names_and_ids_say_what_is_known():
    with pytest.raises(KeyError, match="PINHOLE"):
        cm.model_by_name("PINHOLEZ")
    with pytest.raises(KeyError, match="0-17"):
        cm.model_by_id(99)


def test_distortion_parameters_are_named():
    assert cm.distortion_parameters("OPENCV", np.array([1, 2, 3, 4, 0.1, 0.2, 0.3, 0.4])) == \
        {"k1": 0.1, "k2": 0.2, "p1": 0.3, "p2": 0.4}
    assert cm.distortion_parameters("PINHOLE", np.array([1, 2, 3, 4])) == {}
