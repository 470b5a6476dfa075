"""Typed job events: what the backend writes is what the add-on reads, and a bad body names its field."""
import math

import pytest

from carrara.shared.protocol import (ArtifactEvent, ArtifactRef, ErrorEvent, EventKind, JobState, LogEvent,
                                     MAX_LOG_LINE_CHARS, ProgressEvent, ProtocolError, StateEvent, decode, encode,
                                     job_event, read_event)

REF = ArtifactRef(name="preview_0000500.npz", size=10, sha256="ab" * 32, kind=EventKind.PREVIEW_MESH, iteration=500,
                  stats={"faces": 12})
RECORDS = [
    StateEvent(JobState.RUNNING, "started"),
    ProgressEvent.at(250, 1000, loss=0.05, psnr=24.5, rate=15.5, eta_s=48.0, phase="train"),
    LogEvent("iteration 250", "warning"),
    ErrorEvent("the disk is full: free space in /work and resume", ""),
    ErrorEvent("internal error e-12 in the backend (KeyError: 'x'); its log has the details", error_id="e-12"),
    ArtifactEvent(EventKind.PREVIEW_MESH, REF),
    ArtifactEvent(EventKind.ARTIFACT, ArtifactRef(name="report.json", size=3, sha256="cd" * 32, kind="report")),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_every_event_survives_the_wire(record):
    message = decode(encode(job_event("job-1", record)))
    assert message.job_id == "job-1"
    assert read_event(message.body) == record


def test_progress_drops_what_json_cannot_carry_and_derives_the_fraction():
    progress = ProgressEvent.at(3, 2, loss=math.nan, psnr=math.inf, rate=2.0, eta_s=None)
    assert (progress.loss, progress.psnr, progress.fraction) == (None, None, 1.0)
    assert ProgressEvent.at(5, 0).fraction == 0.0
    assert read_event(decode(encode(job_event("j", progress))).body) == progress


def test_artifact_event_says_what_the_file_is():
    assert ArtifactEvent(EventKind.FINAL_MESH, REF).artifact_kind == EventKind.FINAL_MESH
    assert RECORDS[-1].artifact_kind == "report"


def test_long_log_lines_and_unknown_levels_are_tamed():
    body = job_event("j", LogEvent.of("x" * (MAX_LOG_LINE_CHARS + 50), "shouting")).body
    record = read_event(body)
    assert record.line.endswith("(50 more characters cut)") and record.level == "info"
    assert len(record.line) < MAX_LOG_LINE_CHARS + 50


@pytest.mark.parametrize("body, words", [
    ({}, "'event' is missing"),
    ({"event": "gossip"}, "'gossip'"),
    ({"event": EventKind.STATE, "state": "dancing"}, "'state'"),
    ({"event": EventKind.PROGRESS, "iteration": "ten", "total": 100}, "'iteration'"),
    ({"event": EventKind.PROGRESS, "iteration": 1, "total": 2, "loss": "low"}, "'loss'"),
    ({"event": EventKind.LOG}, "'line'"),
    ({"event": EventKind.ERROR, "message": 7}, "'message'"),
    ({"event": EventKind.FINAL_MESH}, "'artifact'"),
    ({"event": EventKind.FINAL_MESH, "artifact": {"name": "a.npz"}}, "'size'"),
])
def test_a_bad_event_body_names_its_field(body, words):
    with pytest.raises(ProtocolError) as caught:
        read_event(body)
    assert words in caught.value.message
