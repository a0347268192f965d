"""Understanding a volunteer's SMS reply: ack, safe, help, headcount, opt-out/in, or free text.

The rules, in the order they are tried (the table in `tests/replies/test_parser.py`
is the full specification):

1. The text is folded: NFKC, every Unicode digit to ASCII, case and accents dropped,
   apostrophes removed ("don't" -> "dont"), other punctuation to spaces, letters glued
   to digits split ("OK4821" -> "ok 4821"), and each CJK character made its own token.
2. Opt-out / opt-in / info: the whole message is one of Twilio's keywords. Only Twilio's
   list, because Twilio itself acts on exactly those; "STOP 4821" is not an opt-out to
   Twilio, so it is kept as text for an officer, and it never acknowledges either.
   A whole-message "YES" is Twilio's opt-in too, but here it is read as an ACK (rule 6)
   whose `opts_in` is true: the caller opts the number back in and acknowledges.
   "INFO" is Twilio's other help keyword: it asks what this number is, not for rescue.
3. Help: a help word anywhere ("HELP", "necesito ayuda", "SOS", "救命"), unless one of
   the two tokens just before it is a negation ("no help needed"). It wins over every
   other reading, since a volunteer in distress matters more than a missed ack.
4. A Twilio keyword first, or STOP/STOPALL/UNSUBSCRIBE anywhere: never an ack.
5. Headcount: DONE / LISTO (after an optional code) and up to two numbers, reached and
   need-help ("DONE 12 3", "done 12/3"). A 4-6 digit number right after DONE is a count,
   not the code, unless two more numbers follow ("DONE 4821 12 3"): a volunteer may
   really have reached 1200 people, and a code is only certain when three numbers
   leave no other reading. With three numbers where the first is not code-like
   ("DONE 12 3 4821"), the third is taken as the code if it looks like one.
6. Safe and ack: after optional codes the message starts with acknowledgement words
   (repeats allowed: "ok ok", "yes got it") and/or a safe phrase, and holds no
   negation anywhere ("yes but the road is blocked" is an ack, "yes, no problem" is
   not: an unneeded escalation is cheaper than a zone wrongly marked as covered).
   "Y" and "1" are acks only alone (with a code at most), since "y" is Spanish for
   "and". The caller keeps the whole text either way.
7. Everything else is unknown: kept for the officers, with its code if it has one.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from dispatcher.text import fold

#: A reply code is a standalone number of this many digits.
CODE_DIGITS = (4, 6)
#: A headcount is at most this many digits; larger numbers are not believable counts.
MAX_COUNT_DIGITS = 6


class ReplyKind(StrEnum):
    ACK = "ack"
    SAFE = "safe"
    HELP = "help"
    HEADCOUNT = "headcount"
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    INFO = "info"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class ParsedReply:
    """A reply as understood; `text` is always the original message, unchanged."""

    kind: ReplyKind
    code: str | None
    headcount_reached: int | None
    headcount_need_help: int | None
    text: str

    @property
    def opts_in(self) -> bool:
        """Twilio opted the number back in before we saw this (START, UNSTOP, a bare YES)."""
        return carrier_keyword(self.text) == ReplyKind.OPT_IN


_APOSTROPHES = re.compile(r"['’‘`´ʼ]")
_NON_WORD = re.compile(r"[\W_]+")
_LETTER_DIGIT = re.compile(r"(?<=\d)(?=[^\W\d_])|(?<=[^\W\d_])(?=\d)")
#: CJK ideographs and kana: written without spaces, so each character is its own token.
_CJK = re.compile(r"([\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff])")


def tokenize(text: str) -> list[str]:
    """The folded tokens of a message (see rule 1 of the module docstring)."""
    text = unicodedata.normalize("NFKC", text)
    # NFKC maps full-width digits but not e.g. Arabic-Indic ones: map every decimal digit.
    text = "".join(
        str(unicodedata.decimal(ch)) if not ch.isascii() and ch.isdecimal() else ch
        for ch in text
    )
    text = fold(_APOSTROPHES.sub("", text))
    text = _NON_WORD.sub(" ", text)
    text = _LETTER_DIGIT.sub(" ", text)
    text = _CJK.sub(r" \1 ", text)
    return text.split()


def _phrases(words: Iterable[str]) -> frozenset[tuple[str, ...]]:
    return frozenset(tuple(tokenize(w)) for w in words)


ACK_PHRASES = _phrases([
    "YES", "YEP", "YEAH", "YUP", "OK", "OKAY", "OKEY", "O.K.", "ACK", "CONFIRM", "CONFIRMED",
    "RECEIVED", "GOT IT", "ROGER", "SÍ", "VALE", "CLARO", "CONFIRMO", "RECIBIDO", "RECIBÍ",
    "ENTERADO", "ENTERADA", "ENTENDIDO", "DE ACUERDO", "OUI", "D'ACCORD", "SIM", "JA",
    "ДА", "ИӘ", "ИЯ", "ОК", "ПОЛУЧИЛ", "ПОЛУЧИЛА", "ПРИНЯТО", "ПОДТВЕРЖДАЮ",
    "是", "好", "收到", "确认", "是的", "好的",
])
#: Acknowledgements only when they are the whole message (a code aside): "y" is Spanish "and".
WHOLE_MESSAGE_ACKS = _phrases(["Y", "1"])
SAFE_PHRASES = _phrases([
    "SAFE", "I AM SAFE", "I'M SAFE", "WE ARE SAFE", "WE'RE SAFE", "ALL SAFE",
    "ESTOY BIEN", "ESTAMOS BIEN", "A SALVO", "ESTOY A SALVO", "ESTAMOS A SALVO",
    "SEGURO", "SEGURA", "ESTOY SEGURO", "ESTOY SEGURA",
    "В БЕЗОПАСНОСТИ", "Я В БЕЗОПАСНОСТИ", "МЫ В БЕЗОПАСНОСТИ", "安全", "我安全", "我很安全",
])
#: Single words (or CJK pairs) that mean "help"; "need help" etc. contain them.
HELP_PHRASES = _phrases([
    "HELP", "AYUDA", "AUXILIO", "SOCORRO", "SOS", "MAYDAY", "ПОМОГИТЕ", "ПОМОЩЬ", "救命",
])
DONE_PHRASES = _phrases(["DONE", "LISTO", "LISTA", "ГОТОВО", "完成"])
NEGATIONS = frozenset(tokenize(
    "no not dont don't cant can't cannot never nope nah negative isnt wont didnt havent "
    "non pas não nein nicht nunca tampoco ni не нет жоқ 不 没 否 别"
))
#: Twilio's default opt-out, opt-in and help keywords (whole message): Twilio acts on them
#: before our webhook sees the message, and our state follows. YES is also Twilio's
#: opt-in, but here it acknowledges as well (see `ParsedReply.opts_in`).
OPT_OUT_WORDS = frozenset({"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "revoke",
                           "optout"})
OPT_IN_WORDS = frozenset({"start", "unstop"})
#: Twilio's opt-in words that are read as acknowledgements here.
ACK_AND_OPT_IN_WORDS = frozenset({"yes"})
CARRIER_OPT_IN_WORDS = OPT_IN_WORDS | ACK_AND_OPT_IN_WORDS
#: Twilio's help keywords are HELP and INFO; HELP is also a cry for help (rule 3).
INFO_WORDS = frozenset({"info"})
#: Words that, anywhere in a message, mean it must never count as an acknowledgement.
NEVER_ACK_WORDS = frozenset({"stop", "stopall", "unsubscribe"})


def _is_code(token: str) -> bool:
    return token.isascii() and token.isdigit() and CODE_DIGITS[0] <= len(token) <= CODE_DIGITS[1]


def _is_number(token: str) -> bool:
    return token.isascii() and token.isdigit()


def _match(tokens: Sequence[str], i: int, phrases: frozenset[tuple[str, ...]]) -> int:
    """Length of the longest phrase starting at tokens[i], or 0."""
    best = 0
    for phrase in phrases:
        n = len(phrase)
        if n > best and tuple(tokens[i:i + n]) == phrase:
            best = n
    return best


def _skip_codes(tokens: Sequence[str], i: int) -> int:
    while i < len(tokens) and _is_code(tokens[i]):
        i += 1
    return i


def extract_code(text: str) -> str | None:
    """The first standalone 4-6 digit number in the text (any digits, glued or not)."""
    return next((t for t in tokenize(text) if _is_code(t)), None)


def carrier_keyword(text: str) -> ReplyKind | None:
    """OPT_OUT, OPT_IN or INFO when Twilio itself acts on the message as a keyword."""
    return _keyword(tokenize(text))


def _keyword(tokens: Sequence[str]) -> ReplyKind | None:
    if len(tokens) != 1:
        return None
    if tokens[0] in OPT_OUT_WORDS:
        return ReplyKind.OPT_OUT
    if tokens[0] in CARRIER_OPT_IN_WORDS:
        return ReplyKind.OPT_IN
    return ReplyKind.INFO if tokens[0] in INFO_WORDS else None


def parse_reply(text: str) -> ParsedReply:
    """Classify one reply; pure and total: any string gives an answer, nothing raises."""
    tokens = tokenize(text)
    code = next((t for t in tokens if _is_code(t)), None)

    def reply(kind: ReplyKind, code: str | None = code, reached: int | None = None,
              need_help: int | None = None) -> ParsedReply:
        return ParsedReply(kind=kind, code=code, headcount_reached=reached,
                           headcount_need_help=need_help, text=text)

    keyword = _keyword(tokens)
    if keyword is not None and tokens[0] not in ACK_AND_OPT_IN_WORDS:
        return reply(keyword)
    if _asks_for_help(tokens):
        return reply(ReplyKind.HELP)
    if not tokens or tokens[0] in OPT_OUT_WORDS | OPT_IN_WORDS or NEVER_ACK_WORDS & set(tokens):
        return reply(ReplyKind.UNKNOWN)

    start = _skip_codes(tokens, 0)
    headcount = _headcount(tokens, start)
    if headcount is not None:
        found, reached, need_help = headcount
        return reply(ReplyKind.HEADCOUNT, found, reached, need_help)

    if NEGATIONS & set(tokens):
        return reply(ReplyKind.UNKNOWN)
    return reply(_ack_or_safe(tokens, start))


def _asks_for_help(tokens: Sequence[str]) -> bool:
    for i in range(len(tokens)):
        if _match(tokens, i, HELP_PHRASES) and not NEGATIONS & set(tokens[max(0, i - 2):i]):
            return True
    return False


#: (code, reached, need_help) of a DONE report.
Headcount = tuple[str | None, int | None, int | None]


def _headcount(tokens: Sequence[str], start: int) -> Headcount | None:
    """(code, reached, need_help) when the message is a DONE report, else None."""
    n = _match(tokens, start, DONE_PHRASES)
    if not n:
        return None
    leading_code = tokens[start - 1] if start else None
    i = start + n
    numbers: list[str] = []
    while i < len(tokens) and _is_number(tokens[i]) and len(numbers) < 3:
        numbers.append(tokens[i])
        i += 1
    code = leading_code
    if len(numbers) == 3:
        if _is_code(numbers[0]):
            code = code or numbers[0]
            numbers = numbers[1:]
        else:
            code = code or (numbers[2] if _is_code(numbers[2]) else None)
            numbers = numbers[:2]
    if any(len(num) > MAX_COUNT_DIGITS for num in numbers):
        return None
    counts = [int(num) for num in numbers] + [None, None]
    return code, counts[0], counts[1]


def _ack_or_safe(tokens: Sequence[str], start: int) -> ReplyKind:
    """ACK or SAFE when the message opens with those words (codes aside), else UNKNOWN."""
    whole = _match(tokens, start, WHOLE_MESSAGE_ACKS)
    if whole and all(_is_code(t) for t in tokens[start + whole:]):
        return ReplyKind.ACK
    i, acked = start, False
    while i < len(tokens):
        n = _match(tokens, i, ACK_PHRASES)
        if not n:
            break
        i, acked = _skip_codes(tokens, i + n), True
    if i < len(tokens) and _match(tokens, i, SAFE_PHRASES):
        return ReplyKind.SAFE
    return ReplyKind.ACK if acked else ReplyKind.UNKNOWN
