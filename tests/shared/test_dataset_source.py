"""One way to find and read a dataset (one precedence), one list of problems, and photos confined to their folder."""
from __future__ import annotations

import os
import shutil

import pytest

from carrara.shared.dataset_files import DatasetFilesError, dataset_files
from carrara.shared.dataset_source import (COLMAP, ERROR, TRANSFORMS, WARNING, DatasetSourceError, judge_dataset,
                                           open_dataset, read_dataset)
from carrara.shared.colmap import read_model, write_model
from dataset_corpus import CORPUS, absolute_name, colmap_beside_broken_transforms, distortion, ok, parent_name, \
    symlink_escape, transforms_json, transforms_parent_file_path
from testkit import REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "chair"


@pytest.mark.parametrize("where", ["", "sparse", "sparse/0", "sparse/0/images.bin", "sparse/0/cameras.bin"])
def test_every_way_of_naming_a_colmap_workspace_reads_the_same_model(where):
    source = read_dataset(EXAMPLE / where)
    assert source.format == COLMAP and source.model_path == EXAMPLE / "sparse" / "0"
    assert source.names_file == EXAMPLE / "sparse" / "0" / "images.bin" and source.images_dir == EXAMPLE / "images"
    assert len(source.rec.images) == 60 and source.unused is None


def test_a_text_model_reads_too(tmp_path):
    write_model(read_model(EXAMPLE), tmp_path / "model", binary=False)
    shutil.copytree(EXAMPLE / "images", tmp_path / "images")
    source = read_dataset(tmp_path / "model")
    assert source.names_file == tmp_path / "model" / "images.txt" and len(source.photos()) == 60


def test_a_transforms_json_reads_as_the_file_or_its_folder(tmp_path):
    path, _ = transforms_json(tmp_path / "d")
    (path.parent / "sparse").rename(path.parent / "model-elsewhere")      # the folder then holds only the json
    for given in (path, path.parent):
        source = read_dataset(given)
        assert source.format == TRANSFORMS and source.model_path == path and source.sphere is not None
        assert [image.name for image in source.photos()] == [f"images/img_00{i}.png" for i in (1, 2, 3)]


def test_precedence_colmap_first_then_the_json_when_named(tmp_path):
    path, _ = transforms_json(tmp_path / "d")
    folder = read_dataset(path.parent)
    assert folder.format == COLMAP and folder.unused == path
    assert read_dataset(path).format == TRANSFORMS
    _, verdict = open_dataset(path.parent)
    assert [(p.severity, p.where) for p in verdict.problems] == [(WARNING, str(path))]
    assert verdict.verdict == WARNING and verdict.refusal is None


def test_a_broken_transforms_json_beside_a_model_is_never_read(tmp_path):
    path, _ = colmap_beside_broken_transforms(tmp_path / "d")
    source, verdict = judge_dataset(path)
    assert source.format == COLMAP and verdict.errors == []


@pytest.mark.parametrize("given, words", [("nowhere", "no such file or folder"),
                                          ("empty", "no COLMAP model found"),
                                          ("empty", "nor is there a transforms.json")])
def test_inputs_that_are_no_dataset_name_the_path(tmp_path, given, words):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetSourceError, match=words):
        read_dataset(tmp_path / given)
    source, verdict = open_dataset(tmp_path / given)
    assert source is None and verdict.verdict == ERROR and words in verdict.refusal


@pytest.mark.parametrize("make", CORPUS, ids=lambda make: make.__name__)
def test_the_corpus_without_opening_photos_finds_every_fault_but_the_pixels(tmp_path, make):
    """Without a photo reader (the add-on at import) only a photo's contents go unjudged."""
    path, fragment = make(tmp_path / "dataset")
    _, verdict = judge_dataset(path)
    if fragment is None or make.__name__ in ("wrong_size_photo", "truncated_photo"):
        assert verdict.refusal is None, verdict.refusal
    else:
        assert fragment in verdict.refusal


def test_a_problem_names_the_file_and_round_trips_through_the_report(tmp_path):
    path, _ = distortion(tmp_path / "d")
    _, verdict = open_dataset(path)
    [problem] = verdict.problems
    assert problem.where == str(path / "sparse" / "0" / "cameras.bin") and problem.severity == ERROR
    assert "undistort first" in problem.text and str(problem).startswith(problem.where + ": ")
    assert type(problem).from_json(problem.to_json()) == problem


@pytest.mark.parametrize("make", [parent_name, absolute_name, symlink_escape, transforms_parent_file_path],
                         ids=lambda make: make.__name__)
def test_photos_outside_are_refused_unless_inside_an_allowed_root(tmp_path, make):
    path, fragment = make(tmp_path / "dataset")
    _, verdict = judge_dataset(path)
    assert fragment in verdict.refusal and "keep every photo inside the photos folder" in verdict.refusal
    _, verdict = judge_dataset(path, allowed_roots=[tmp_path])
    assert verdict.refusal is None
    _, verdict = judge_dataset(path, allowed_roots=[tmp_path / "dataset"])
    assert "outside where the photos may be; keep every photo inside the allowed folders" in verdict.refusal


def test_allowed_roots_replace_the_photos_folder(tmp_path):
    """A server's roots are the only places photos may be, even when the photos folder lies outside them."""
    path, _ = ok(tmp_path / "dataset")
    (tmp_path / "store").mkdir()
    _, verdict = judge_dataset(path, allowed_roots=[tmp_path / "store"])
    assert len(verdict.errors) == 3 and all("img_00" in p.text for p in verdict.errors)
    assert judge_dataset(path, allowed_roots=[tmp_path / "store", path])[1].refusal is None


def test_a_missing_frame_that_leads_out_is_an_error_whether_or_not_it_exists(tmp_path):
    path, _ = transforms_parent_file_path(tmp_path / "dataset")
    for outside in tmp_path.glob("*_outside.png"):
        outside.unlink()
    _, verdict = judge_dataset(path)
    assert "file_path '../dataset_outside.png' leads to" in verdict.refusal


def test_the_upload_list_refuses_what_the_verdict_refuses(tmp_path):
    path, _ = ok(tmp_path / "ok")
    assert sorted(dataset_files(path)) == ["images/img_001.png", "images/img_002.png", "images/img_003.png",
                                           "sparse/0/cameras.bin", "sparse/0/frames.bin", "sparse/0/images.bin",
                                           "sparse/0/points3D.bin", "sparse/0/rigs.bin"]
    path, _ = symlink_escape(tmp_path / "escape")
    with pytest.raises(DatasetFilesError, match="leads to"):
        dataset_files(path)
    path, _ = transforms_json(tmp_path / "json")
    assert sorted(dataset_files(path)) == ["images/img_001.png", "images/img_002.png", "images/img_003.png",
                                           "transforms.json"]
    assert os.path.samefile(dataset_files(path)["transforms.json"], path)
