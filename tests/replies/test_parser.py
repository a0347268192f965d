"""The reply parser: a table of real-world replies, then properties over arbitrary text."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from dispatcher.replies.parser import ParsedReply, ReplyKind, extract_code, parse_reply

ACK, SAFE, HELP, HEAD = ReplyKind.ACK, ReplyKind.SAFE, ReplyKind.HELP, ReplyKind.HEADCOUNT
OUT, IN, UNK = ReplyKind.OPT_OUT, ReplyKind.OPT_IN, ReplyKind.UNKNOWN
INFO = ReplyKind.INFO

# (text, kind, code, reached, need_help)
TABLE: list[tuple[str, ReplyKind, str | None, int | None, int | None]] = [
    # English acknowledgements, alone and with the code anywhere
    ("YES", ACK, None, None, None),
    ("yes", ACK, None, None, None),
    ("Yes 4821", ACK, "4821", None, None),
    ("4821 yes", ACK, "4821", None, None),
    ("YES4821", ACK, "4821", None, None),
    ("YES!!", ACK, None, None, None),
    ("  yes  ", ACK, None, None, None),
    ("Y", ACK, None, None, None),
    ("y 4821", ACK, "4821", None, None),
    ("Yep", ACK, None, None, None),
    ("yeah!", ACK, None, None, None),
    ("OK", ACK, None, None, None),
    ("ok.", ACK, None, None, None),
    ("4821 ok", ACK, "4821", None, None),
    ("OK4821", ACK, "4821", None, None),
    ("ok ok", ACK, None, None, None),
    ("O.K.", ACK, None, None, None),
    ("Okay 482199", ACK, "482199", None, None),
    ("ACK", ACK, None, None, None),
    ("ack-4821", ACK, "4821", None, None),
    ("1", ACK, None, None, None),
    ("1 4821", ACK, "4821", None, None),
    ("Confirm", ACK, None, None, None),
    ("CONFIRMED 4821", ACK, "4821", None, None),
    ("received", ACK, None, None, None),
    ("Got it", ACK, None, None, None),
    ("got it, 4821", ACK, "4821", None, None),
    ("Roger", ACK, None, None, None),
    ("yes got it 4821", ACK, "4821", None, None),
    ("yes but the road is blocked", ACK, None, None, None),
    ("OK 4821 road to airport blocked", ACK, "4821", None, None),
    # Spanish
    ("Sí", ACK, None, None, None),
    ("si", ACK, None, None, None),
    ("SÍ, 4821", ACK, "4821", None, None),
    ("¡Sí!", ACK, None, None, None),
    ("Vale", ACK, None, None, None),
    ("claro 4821", ACK, "4821", None, None),
    ("Confirmo", ACK, None, None, None),
    ("recibido", ACK, None, None, None),
    ("Enterado.", ACK, None, None, None),
    ("de acuerdo", ACK, None, None, None),
    ("De Acuerdo 4821", ACK, "4821", None, None),
    # French, Portuguese, German
    ("Oui", ACK, None, None, None),
    ("d'accord", ACK, None, None, None),
    ("Sim 4821", ACK, "4821", None, None),
    ("Ja", ACK, None, None, None),
    # Russian and Kazakh
    ("Да", ACK, None, None, None),
    ("да 4821", ACK, "4821", None, None),
    ("ДА!", ACK, None, None, None),
    ("Иә", ACK, None, None, None),
    ("ИЯ 4821", ACK, "4821", None, None),
    ("ОК", ACK, None, None, None),  # Cyrillic O and K
    ("Получил", ACK, None, None, None),
    ("принято 4821", ACK, "4821", None, None),
    ("Подтверждаю", ACK, None, None, None),
    # Chinese
    ("是", ACK, None, None, None),
    ("好", ACK, None, None, None),
    ("收到", ACK, None, None, None),
    ("收到4821", ACK, "4821", None, None),
    ("确认", ACK, None, None, None),
    ("是的", ACK, None, None, None),
    ("好的，收到", ACK, None, None, None),
    ("好的收到", ACK, None, None, None),
    # Unicode digits
    ("ＯＫ　４８２１", ACK, "4821", None, None),  # full-width letters, digits and space
    ("yes ٤٨٢١", ACK, "4821", None, None),  # Arabic-Indic digits
    ("yes ४८२१", ACK, "4821", None, None),  # Devanagari digits
    # Safe
    ("SAFE", SAFE, None, None, None),
    ("safe 4821", SAFE, "4821", None, None),
    ("I am safe", SAFE, None, None, None),
    ("I'm safe!", SAFE, None, None, None),
    ("we are safe", SAFE, None, None, None),
    ("ok, safe", SAFE, None, None, None),
    ("Estoy bien", SAFE, None, None, None),
    ("estamos bien 4821", SAFE, "4821", None, None),
    ("A salvo", SAFE, None, None, None),
    ("Seguro", SAFE, None, None, None),
    ("В безопасности", SAFE, None, None, None),
    ("я в безопасности 4821", SAFE, "4821", None, None),
    ("安全", SAFE, None, None, None),
    ("我安全", SAFE, None, None, None),
    # Help: wins over everything else
    ("HELP", HELP, None, None, None),
    ("help!!", HELP, None, None, None),
    ("Need help", HELP, None, None, None),
    ("I need help 4821", HELP, "4821", None, None),
    ("no, I need help", HELP, None, None, None),
    ("OK 4821 but need help", HELP, "4821", None, None),
    ("ayuda", HELP, None, None, None),
    ("Necesito ayuda", HELP, None, None, None),
    ("SOS", HELP, None, None, None),
    ("Помогите!", HELP, None, None, None),
    ("нужна помощь", HELP, None, None, None),
    ("救命", HELP, None, None, None),
    ("STOP help", HELP, None, None, None),
    ("no help needed", UNK, None, None, None),
    ("don't need help", UNK, None, None, None),
    ("no necesito ayuda", UNK, None, None, None),
    # Headcounts
    ("DONE 12 3", HEAD, None, 12, 3),
    ("done 12", HEAD, None, 12, None),
    ("done 12/3", HEAD, None, 12, 3),
    ("Done: 12, 3", HEAD, None, 12, 3),
    ("LISTO 12 3", HEAD, None, 12, 3),
    ("listo 0 0", HEAD, None, 0, 0),
    ("Готово 7 1", HEAD, None, 7, 1),
    ("4821 DONE 12 3", HEAD, "4821", 12, 3),
    ("DONE 4821 12 3", HEAD, "4821", 12, 3),  # three numbers: the first is the code
    ("DONE 4821 12", HEAD, None, 4821, 12),  # two numbers: both are counts
    ("DONE 4821", HEAD, None, 4821, None),
    ("DONE 12 3 4821", HEAD, "4821", 12, 3),  # trailing code-like number is the code
    ("DONE12 3", HEAD, None, 12, 3),
    ("DONE", HEAD, None, None, None),
    ("DONE 1234567 3", UNK, None, None, None),  # not a believable count
    # Opt-out and opt-in: Twilio's keywords, whole message only
    ("STOP", OUT, None, None, None),
    ("stop", OUT, None, None, None),
    ("Stop.", OUT, None, None, None),
    ("STOPALL", OUT, None, None, None),
    ("Unsubscribe", OUT, None, None, None),
    ("CANCEL", OUT, None, None, None),
    ("end", OUT, None, None, None),
    ("QUIT", OUT, None, None, None),
    ("REVOKE", OUT, None, None, None),
    ("optout", OUT, None, None, None),
    ("OptOut!", OUT, None, None, None),
    ("START", IN, None, None, None),
    ("unstop", IN, None, None, None),
    ("STOP 4821", UNK, "4821", None, None),  # never an ack, and Twilio does not act on it
    ("yes stop", UNK, None, None, None),
    ("ok unsubscribe me", UNK, None, None, None),
    ("4821 STOP", UNK, "4821", None, None),
    ("cancel 4821", UNK, "4821", None, None),
    ("PARAR", UNK, None, None, None),  # not Twilio's: kept for an officer
    ("start 4821", UNK, "4821", None, None),
    ("revoke 4821", UNK, "4821", None, None),
    # INFO: Twilio's other help keyword, asking what this number is (not for rescue)
    ("INFO", INFO, None, None, None),
    ("info.", INFO, None, None, None),
    ("info 4821", UNK, "4821", None, None),
    ("more info on the road please", UNK, None, None, None),
    # Unknown: free text, negations, bare codes, words that merely contain "ok"
    ("4821", UNK, "4821", None, None),
    ("", UNK, None, None, None),
    ("   ", UNK, None, None, None),
    ("?!", UNK, None, None, None),
    ("NO", UNK, None, None, None),
    ("no 4821", UNK, "4821", None, None),
    ("not ok", UNK, None, None, None),
    ("no ok", UNK, None, None, None),
    ("Not OK 4821", UNK, "4821", None, None),
    ("yes, no problem", UNK, None, None, None),
    ("no puedo", UNK, None, None, None),
    ("no estoy bien", UNK, None, None, None),
    ("not safe", UNK, None, None, None),
    ("нет", UNK, None, None, None),
    ("не получил", UNK, None, None, None),
    ("好不好", UNK, None, None, None),
    ("我不好", UNK, None, None, None),
    ("没收到", UNK, None, None, None),
    ("road to airport blocked", UNK, None, None, None),
    ("tokyo", UNK, None, None, None),
    ("book", UNK, None, None, None),
    ("smoke on the highway", UNK, None, None, None),
    ("yesterday was calm", UNK, None, None, None),
    ("y la carretera está cerrada", UNK, None, None, None),
    ("1 person injured downtown", UNK, None, None, None),
    ("who is this?", UNK, None, None, None),
    ("call me at 5550802000", UNK, None, None, None),  # ten digits: not a code
    ("ЖОҚ", UNK, None, None, None),
    ("maybe", UNK, None, None, None),
]


def test_table_is_big_enough() -> None:
    assert len(TABLE) >= 80


@pytest.mark.parametrize(("text", "kind", "code", "reached", "need_help"), TABLE)
def test_reply_table(text: str, kind: ReplyKind, code: str | None, reached: int | None,
                     need_help: int | None) -> None:
    parsed = parse_reply(text)
    assert parsed == ParsedReply(kind=kind, code=code, headcount_reached=reached,
                                 headcount_need_help=need_help, text=text)


@pytest.mark.parametrize(("text", "code"), [
    ("yes 4821", "4821"), ("OK4821", "4821"), ("ack-482199", "482199"), ("123", None),
    ("1234567", None), ("", None), ("codes 4821 and 5932", "4821"), ("۴۸۲۱", "4821"),
])
def test_extract_code(text: str, code: str | None) -> None:
    assert extract_code(text) == code


#: PROVIDERS.md: Twilio's default keywords, acted on by Twilio before our webhook.
TWILIO_OPT_OUT = ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"]
TWILIO_OPT_IN = ["START", "UNSTOP", "YES"]


@pytest.mark.parametrize("word", TWILIO_OPT_OUT)
def test_every_twilio_opt_out_keyword_opts_out(word: str) -> None:
    for text in (word, word.lower(), f" {word.title()}. "):
        parsed = parse_reply(text)
        assert parsed.kind == ReplyKind.OPT_OUT and not parsed.opts_in


@pytest.mark.parametrize("word", TWILIO_OPT_IN)
def test_every_twilio_opt_in_keyword_opts_in(word: str) -> None:
    for text in (word, word.lower(), f" {word.title()}! "):
        assert parse_reply(text).opts_in
    # YES opts in at Twilio and still acknowledges here.
    assert parse_reply(word).kind == (ReplyKind.ACK if word == "YES" else ReplyKind.OPT_IN)


@pytest.mark.parametrize("text", ["yes 4821", "ok", "sí", "START 4821", "yes start", "INFO"])
def test_only_a_whole_message_keyword_opts_in(text: str) -> None:
    assert not parse_reply(text).opts_in


# --- properties ----------------------------------------------------------------------------

ACK_WORDS = ["YES", "Y", "YEP", "YEAH", "OK", "OKAY", "ACK", "1", "CONFIRM", "CONFIRMED",
             "RECEIVED", "GOT IT", "ROGER", "SÍ", "VALE", "CLARO", "CONFIRMO", "RECIBIDO",
             "ENTERADO", "DE ACUERDO", "OUI", "SIM", "JA", "ДА", "ИӘ", "ИЯ", "ОК", "ПОЛУЧИЛ",
             "ПРИНЯТО", "ПОДТВЕРЖДАЮ", "是", "好", "收到", "确认", "是的", "好的"]

#: Every ack word and its pieces, folded independently of the parser: none may appear.
_FORBIDDEN_WORDS = {"yes", "y", "yep", "yeah", "yup", "ok", "okay", "okey", "o", "k", "ack",
                    "1", "confirm", "confirmed", "received", "got", "it", "roger", "si",
                    "vale", "claro", "confirmo", "recibido", "recibi", "enterado", "enterada",
                    "entendido", "acuerdo", "oui", "daccord", "sim", "ja", "да", "иә", "ия",
                    "ок", "получил", "получила", "принято", "подтверждаю", "safe", "seguro",
                    "segura", "bien", "salvo", "безопасности"}
_FORBIDDEN_CHARS = set("是好收到确认的安全")


def _crude_words(text: str) -> list[str]:
    """A deliberately simple folding, independent of the parser's, for filtering."""
    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text))
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    text = "".join(str(unicodedata.decimal(c)) if c.isdecimal() else c for c in text)
    text = re.sub(r"['’‘`´ʼ]", "", text)
    return re.split(r"[\W_]+|(?<=\d)(?=\D)|(?<=\D)(?=\d)", text)


def _has_no_ack_word(text: str) -> bool:
    return (not _FORBIDDEN_WORDS & set(_crude_words(text))
            and not _FORBIDDEN_CHARS & set(unicodedata.normalize("NFKC", text)))


FREE_WORDS = ["road", "blocked", "tokyo", "book", "smoke", "no", "not", "calle", "cerrada",
              "4821", "12", "3", "yesterday", "okra", "broken", "stopped", "done", "help",
              "Москва", "дорога", "路", "堵", "!", "?", ".", ",", "de", "la", "sí?no"]
free_text = st.one_of(
    st.text(max_size=60),
    st.lists(st.one_of(st.sampled_from(FREE_WORDS), st.text(min_size=1, max_size=8)),
             max_size=8).map(" ".join),
)


@given(st.text(max_size=300))
@example("\ud800yes")  # a lone surrogate
@example("٤" * 10_000)
def test_any_text_parses_without_raising(text: str) -> None:
    parsed = parse_reply(text)
    assert isinstance(parsed.kind, ReplyKind)
    assert parsed.text == text
    assert parsed.code is None or (parsed.code.isdigit() and 4 <= len(parsed.code) <= 6)
    if text.isascii() and parsed.code is not None:
        assert parsed.code in text


@given(free_text)
@example("tokyo book okra")
@example("no ok")
def test_text_without_an_ack_word_never_acks(text: str) -> None:
    assume(_has_no_ack_word(text))
    assert parse_reply(text).kind not in (ReplyKind.ACK, ReplyKind.SAFE)


def _decorate(word: str, data: st.DataObject) -> str:
    """The same word in another case, with accents and punctuation around it."""
    cased = "".join(
        c.upper() if data.draw(st.booleans(), label=f"upper {i}") else c.lower()
        for i, c in enumerate(word)
    )
    if data.draw(st.booleans(), label="accent"):
        # A combining acute on the first letter: folded away like any accent.
        cased = cased[0] + "\u0301" + cased[1:]
    before = data.draw(st.sampled_from(["", " ", "¡", "\"", "  ", "(", "*"]), label="before")
    after = data.draw(st.sampled_from(["", "!", "!!", ".", "?", " ", ")", "...", " :)"]),
                      label="after")
    return before + cased + after


@given(st.sampled_from(ACK_WORDS), st.data())
def test_decorated_ack_is_still_an_ack(word: str, data: st.DataObject) -> None:
    assert parse_reply(_decorate(word, data)).kind == ReplyKind.ACK


codes = st.integers(min_value=4, max_value=6).flatmap(
    lambda n: st.text(alphabet="0123456789", min_size=n, max_size=n))


@given(st.sampled_from(ACK_WORDS), codes, st.sampled_from(["before", "after", "glued"]),
       st.sampled_from([" ", ", ", " - ", "  ", ": "]), st.booleans())
def test_code_is_found_wherever_it_sits(word: str, code: str, where: str, sep: str,
                                        full_width: bool) -> None:
    shown = code.translate({ord(d): 0xFF10 + int(d) for d in "0123456789"}) if full_width \
        else code
    text = {"before": f"{shown}{sep}{word}", "after": f"{word}{sep}{shown}",
            "glued": f"{word}{shown}"}[where]
    if word == "1" and where == "glued":
        text = f"1 {shown}"  # "14821" is one number, not an ack and a code
    parsed = parse_reply(text)
    assert parsed.kind == ReplyKind.ACK
    assert parsed.code == code
    assert extract_code(text) == code


@given(codes, st.sampled_from(["STOP", "stop", "Stop!", "STOPALL", "unsubscribe"]))
def test_stop_never_acks(code: str, stop: str) -> None:
    for text in (f"{stop} {code}", f"yes {stop}", f"{code} ok {stop}"):
        assert parse_reply(text).kind != ReplyKind.ACK
