"""Protocol round trips and every malformed-frame case, at the codec level (socket cases live with the server)."""
import json

import numpy as np
import pytest

from carrara.shared import protocol as p


def test_round_trip_keeps_header_and_arrays():
    verts = np.arange(12, dtype=">f4").reshape(4, 3)  # big-endian in: must travel little-endian
    colours = np.full((4, 4), 200, np.uint8)
    msg = p.Message(p.MessageType.EVENT, {"event": "log", "line": "héllo"}, request_id="r1", job_id="j1",
                    arrays={"vertices": verts, "colours": colours})
    out = p.decode([bytes(f) for f in p.encode(msg)])
    assert (out.type, out.request_id, out.job_id, out.body) == ("event", "r1", "j1", {"event": "log", "line": "héllo"})
    assert out.arrays["vertices"].dtype == np.dtype("<f4")
    np.testing.assert_array_equal(out.arrays["vertices"], verts)
    np.testing.assert_array_equal(out.arrays["colours"], colours)


def _frames(header: dict, *data: bytes) -> list[bytes]:
    return [json.dumps(header).encode(), *data]


BASE = {"protocol": p.PROTOCOL_VERSION, "type": "ping", "request_id": "x", "job_id": None, "body": {}, "arrays": []}


@pytest.mark.parametrize("frames, code, words", [
    ([], p.ErrorCode.MALFORMED, "empty"),
    ([b"\xff\xfe not json"], p.ErrorCode.MALFORMED, "JSON"),
    ([b"[1, 2]"], p.ErrorCode.MALFORMED, "object"),
    (_frames({**BASE, "protocol": 99}), p.ErrorCode.BAD_VERSION, "99"),
    (_frames({k: v for k, v in BASE.items() if k != "protocol"}), p.ErrorCode.MALFORMED, "protocol"),
    (_frames({**BASE, "type": "dance"}), p.ErrorCode.UNKNOWN_TYPE, "dance"),
    (_frames({**BASE, "body": [1]}), p.ErrorCode.MALFORMED, "body"),
    (_frames({**BASE, "arrays": [{"name": "a", "dtype": "<f4", "shape": [3]}]}, b"\0" * 11),
     p.ErrorCode.BAD_ARRAY, "12"),
    (_frames({**BASE, "arrays": [{"name": "a", "dtype": "O", "shape": [1]}]}, b"\0" * 8), p.ErrorCode.BAD_ARRAY, "dtype"),
    (_frames({**BASE, "arrays": [{"name": "a", "dtype": "<f4", "shape": [1]}]}), p.ErrorCode.BAD_ARRAY, "declares 1"),
    (_frames(BASE, b"extra"), p.ErrorCode.BAD_ARRAY, "declares 0"),
    (_frames({**BASE, "arrays": [{"name": "a", "dtype": "|u1", "shape": [p.MAX_FRAME_BYTES + 1]}]}, b"\0"),
     p.ErrorCode.OVERSIZED, "over"),
])
def test_bad_frames_raise_named_errors(frames, code, words):
    with pytest.raises(p.ProtocolError) as info:
        p.decode(frames)
    assert info.value.code == code
    assert words in info.value.message


def test_encode_refuses_what_cannot_travel():
    with pytest.raises(p.ProtocolError, match="cannot travel"):
        p.encode(p.Message(p.MessageType.EVENT, arrays={"o": np.array([object()])}))
    with pytest.raises(p.ProtocolError, match="chunk it"):
        p.encode(p.Message(p.MessageType.CHUNK, arrays={"d": np.zeros(p.MAX_FRAME_BYTES + 1, np.uint8)}))


def test_require_names_the_field():
    assert p.require({"n": 3}, "n", float) == 3.0
    with pytest.raises(p.ProtocolError, match="'kind' is missing"):
        p.require({}, "kind", str)
    with pytest.raises(p.ProtocolError, match="'n' must be an integer, not a boolean"):
        p.require({"n": True}, "n", int)
    assert p.require({}, "opt", str, optional=True) is None


def test_artifact_ref_round_trip():
    ref = p.ArtifactRef("preview_000100.npz", 1234, "ab" * 32, "preview_mesh", 100, {"faces": 10})
    assert p.ArtifactRef.from_json(json.loads(json.dumps(ref.to_json()))) == ref
