import io

import pytest

from model_runtime.core import protocol as P


def test_roundtrip_and_one_line_per_message():
    buf = io.BytesIO()
    P.write(buf, P.event("progress", id="a", frame=3, total=10, fps=12.5, message="x\ny"))
    P.write(buf, P.request("cancel", id="a"))
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2
    assert P.decode(lines[0])["frame"] == 3 and P.decode(lines[0])["message"] == "x\ny"
    assert P.decode(lines[1]) == {"cmd": "cancel", "id": "a"}


@pytest.mark.parametrize("line", [b"not json", b"[1,2]", b'{"foo":1}', b'{"cmd":"format_disk"}', b'{"event":"boom"}'])
def test_bad_lines_raise_protocol_error(line):
    with pytest.raises(P.ProtocolError):
        P.decode(line)


def test_nan_is_refused():
    with pytest.raises(ValueError):
        P.encode(P.event("frame", latency_ms=float("nan")))
