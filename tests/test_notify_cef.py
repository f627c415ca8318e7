"""CEF escaping and RFC 5424 framing (stormwatch.notify.cef): hostile strings stay data."""

from __future__ import annotations

import re
from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stormwatch.notify.cef import (
    cef_line,
    escape_header,
    escape_value,
    octet_counted,
    parse_cef,
    rfc5424,
)

HOSTILE = "evil|name\\x=1 cs1=forged\nCEF:0|fake|header|1|2|3|10|\r\x1b[31mred\x00"


def test_header_escapes_pipe_and_backslash() -> None:
    assert escape_header("a|b\\c") == "a\\|b\\\\c"
    # no line break can reach the header: it would end the record for many receivers
    assert escape_header("a\nb\r\nc") == "a b c"


def test_extension_escapes_equals_backslash_and_newlines() -> None:
    assert escape_value("a=b\\c\nd\re") == "a\\=b\\\\c\\nd\\re"
    # a pipe needs no escape in an extension value (CEF spec, "Character encoding")
    assert escape_value("x|y") == "x|y"


def test_control_characters_are_replaced() -> None:
    assert escape_value("a\x1b[31m\x00b") == "a\ufffd[31m\ufffdb"
    assert "\x1b" not in escape_header("\x1b]0;title\x07")


def test_hostile_record_parses_back_to_the_same_fields() -> None:
    line = cef_line("campaign", HOSTILE, 3, [("msg", HOSTILE), ("cs1Label", "factKey"), ("cs1", "campaign:cmp-1")])
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    fields, ext = parse_cef(line)
    assert fields[0] == "0" and fields[1:4] == ["stormwatch", "stormwatch", "0"]
    assert fields[4] == "campaign"
    assert fields[5] == escape_header(HOSTILE).replace("\\|", "|").replace("\\\\", "\\")
    assert fields[6] == "8"  # level 3 -> CEF severity 8
    # the forged "cs1=forged" inside the value did not become an extension of its own
    assert ext["cs1"] == "campaign:cmp-1"
    assert set(ext) == {"msg", "cs1Label", "cs1"}
    assert ext["msg"] == HOSTILE.replace("\x1b", "\ufffd").replace("\x00", "\ufffd")


def test_bad_extension_key_is_refused() -> None:
    with pytest.raises(ValueError, match="extension key"):
        cef_line("x", "y", 1, [("bad key", "v")])


@given(st.text(), st.text())
def test_any_text_round_trips(name: str, value: str) -> None:
    line = cef_line("sig", name, 2, [("msg", value), ("cs2", value + "=")])
    fields, ext = parse_cef(line)
    assert len(fields) == 7
    assert "\n" not in line and "\r" not in line
    clean = value.replace("\t", " ")
    clean = re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\x80-\x9f]", "\ufffd", clean)
    assert ext["msg"] == clean.replace("\r\n", "\n")
    assert ext["cs2"] == clean.replace("\r\n", "\n") + "="


def test_rfc5424_frame() -> None:
    frame = rfc5424("CEF:0|a|b|c|d|e|5|msg=x", ts=datetime(2006, 8, 14, 21, 0, 0, 5), hostname="sensor one\n",
                    app_name="stormwatch", msgid="level", facility=16, severity=3)
    # PRI = 16 * 8 + 3; the host name's space and line feed cannot split the header
    assert frame == b"<131>1 2006-08-14T21:00:00.000005Z sensor_one_ stormwatch - level - CEF:0|a|b|c|d|e|5|msg=x"
    assert octet_counted(b"abc") == b"3 abc"


def test_rfc5424_limits_field_lengths() -> None:
    frame = rfc5424("m", ts=datetime(2006, 8, 14), hostname="h" * 300, app_name="a" * 60, msgid="")
    head = frame.decode().split(" ")
    assert len(head[2]) == 255 and len(head[3]) == 48 and head[5] == "-"
