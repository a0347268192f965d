"""SMS encoding and segment counting: GSM-7 (160/153) or UCS-2 (70/67).

One character outside GSM 03.38 turns the whole message into UCS-2, which
counts UTF-16 units (an emoji is two). The composer uses this for its preview
and cost estimate.

A split message never cuts a character in two: a GSM-7 escape pair (`€`, `{`) or
a UTF-16 surrogate pair (an emoji) that would straddle a segment boundary moves
whole to the next segment, as Twilio's segment calculator does, so `"{" * 153`
is three segments although its 306 septets would fit two.
"""

from __future__ import annotations

from dataclasses import dataclass

#: GSM 03.38 basic character set.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
#: GSM 03.38 extension table: each costs two septets (escape + character).
GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")
GSM7_SINGLE, GSM7_MULTI = 160, 153
UCS2_SINGLE, UCS2_MULTI = 70, 67


@dataclass(frozen=True)
class SegmentInfo:
    encoding: str  # "GSM-7" or "UCS-2"
    units: int  # septets for GSM-7, UTF-16 code units for UCS-2
    segments: int
    per_segment: int


def is_gsm7(text: str) -> bool:
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENDED for ch in text)


def _unit_sizes(text: str, gsm7: bool) -> list[int]:
    """Each character's size in its encoding's units: the pieces a split may not cut."""
    if gsm7:
        return [2 if ch in GSM7_EXTENDED else 1 for ch in text]
    return [2 if ord(ch) > 0xFFFF else 1 for ch in text]


def sms_segments(text: str) -> SegmentInfo:
    gsm7 = is_gsm7(text)
    if gsm7:
        single, multi, encoding = GSM7_SINGLE, GSM7_MULTI, "GSM-7"
    else:
        single, multi, encoding = UCS2_SINGLE, UCS2_MULTI, "UCS-2"
    sizes = _unit_sizes(text, gsm7)
    units = sum(sizes)
    if units <= single:
        return SegmentInfo(encoding, units, 1, single)
    segments, used = 1, 0
    for size in sizes:
        if used + size > multi:  # the pair moves whole into the next segment
            segments, used = segments + 1, 0
        used += size
    return SegmentInfo(encoding, units, segments, multi)


#: What a cut text ends with: GSM-7, so cutting never turns a message into UCS-2
#: ("…", U+2026, is not GSM-7 and would halve every segment).
CUT_MARK = "..."


def cut_sms(text: str, max_chars: int) -> str:
    """`text` if it fits in `max_chars`, else its start and `CUT_MARK` in exactly that many.

    The mark is GSM-7, so a GSM-7 text stays GSM-7 (and within the same segment count
    bound); the cut is at a word boundary when there is one in the last fifth.
    """
    if len(text) <= max_chars:
        return text
    room = max(max_chars - len(CUT_MARK), 0)
    head = text[:room]
    space = head.rfind(" ")
    if space >= room * 4 // 5:
        head = head[:space]
    return head.rstrip() + CUT_MARK
