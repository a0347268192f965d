"""GSM-7 / UCS-2 segment counting."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from channels.encoding import CUT_MARK, GSM7_BASIC, GSM7_EXTENDED, cut_sms, is_gsm7, sms_segments


@pytest.mark.parametrize(("text", "encoding", "units", "segments"), [
    ("a" * 160, "GSM-7", 160, 1),
    ("a" * 161, "GSM-7", 161, 2),
    ("a" * 306, "GSM-7", 306, 2),
    ("a" * 307, "GSM-7", 307, 3),
    ("€" * 80, "GSM-7", 160, 1),  # extension characters take two septets
    ("[" * 81, "GSM-7", 162, 2),
    ("Manifestación" , "UCS-2", 13, 1),  # ó is not in GSM-7
    ("Mañana en Querétaro, niños: ü" * 5, "GSM-7", 145, 1),  # ñ é ü are
    ("é" * 161, "GSM-7", 161, 2),
    ("Тревога: демонстрация", "UCS-2", 21, 1),
    ("д" * 70, "UCS-2", 70, 1),
    ("д" * 71, "UCS-2", 71, 2),
    ("д" * 134, "UCS-2", 134, 2),
    ("д" * 135, "UCS-2", 135, 3),
    ("是" * 70, "UCS-2", 70, 1),
    ("🚨" * 35, "UCS-2", 70, 1),  # an emoji is two UTF-16 units
    ("🚨" * 36, "UCS-2", 72, 2),
])
def test_segment_counts(text: str, encoding: str, units: int, segments: int) -> None:
    info = sms_segments(text)
    assert (info.encoding, info.units, info.segments) == (encoding, units, segments)


#: Twilio's segment calculator: a GSM-7 escape pair or a UTF-16 surrogate pair that would
#: straddle a segment boundary moves whole to the next segment.
CALCULATOR_CASES = [
    ("{" * 153, "GSM-7", 306, 3),  # 76 pairs fill 152 septets; the 77th starts segment 2
    ("{" * 80, "GSM-7", 160, 1),  # one segment holds 160 septets, pairs and all
    ("{" * 81, "GSM-7", 162, 2),
    ("a" * 152 + "€" + "a" * 152, "GSM-7", 306, 3),
    ("a" * 153 + "€" + "a" * 151, "GSM-7", 306, 2),  # the pair starts segment 2 exactly
    ("a" * 152 + "€", "GSM-7", 154, 1),
    ("😀" * 67, "UCS-2", 134, 3),  # 33 emoji per 67-unit segment
    ("😀" * 35, "UCS-2", 70, 1),
    ("д" * 66 + "😀" + "д" * 66, "UCS-2", 134, 3),
    ("д" * 67 + "😀" + "д" * 65, "UCS-2", 134, 2),
]


@pytest.mark.parametrize(("text", "encoding", "units", "segments"), CALCULATOR_CASES)
def test_segments_never_split_an_escape_or_surrogate_pair(text: str, encoding: str,
                                                          units: int, segments: int) -> None:
    info = sms_segments(text)
    assert (info.encoding, info.units, info.segments) == (encoding, units, segments)


@given(st.text(max_size=500))
def test_segment_count_lies_between_packed_and_one_unit_lost_per_segment(text: str) -> None:
    info = sms_segments(text)
    if info.units > (160 if info.encoding == "GSM-7" else 70):
        # at most one unit per segment is left empty by a pair moved to the next one
        assert -(-info.units // info.per_segment) <= info.segments
        assert info.segments <= -(-info.units // (info.per_segment - 1))


@given(st.text(alphabet=sorted(GSM7_BASIC - {"\r"}), max_size=800))
def test_gsm7_only_text_never_goes_ucs2(text: str) -> None:
    info = sms_segments(text)
    assert info.encoding == "GSM-7"
    assert info.segments == (1 if len(text) <= 160 else -(-len(text) // 153))


@given(st.text(max_size=400))
def test_any_text_has_a_sane_count(text: str) -> None:
    info = sms_segments(text)
    assert info.segments >= 1
    assert info.units <= info.segments * (160 if info.encoding == "GSM-7" else 70)
    if any(ch not in GSM7_BASIC and ch not in GSM7_EXTENDED for ch in text):
        assert info.encoding == "UCS-2"


@given(st.text(alphabet=sorted(GSM7_BASIC | GSM7_EXTENDED), max_size=800),
       st.integers(min_value=10, max_value=400))
def test_cutting_never_changes_the_encoding(text: str, limit: int) -> None:
    cut = cut_sms(text, limit)
    assert len(cut) <= limit
    assert is_gsm7(cut)
    if len(text) > limit:
        assert cut.endswith(CUT_MARK)
    else:
        assert cut == text


def test_cut_mark_is_gsm7() -> None:
    assert is_gsm7(CUT_MARK)
    assert cut_sms("a" * 400, 306) == "a" * 303 + "..."
