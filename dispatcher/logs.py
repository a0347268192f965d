"""Logging for people (text, the default) or for a log shipper (`ALN_LOG_FORMAT=json`).

In JSON mode every line a process writes to stdout and stderr is one JSON object: our
records with their structured fields (alert, delivery, zone ids), uvicorn's own lines,
Python warnings, tracebacks and the start-up banner alike. Phone numbers and email
addresses that reach a message are masked by `mask_contact`, the helper every screen
uses, so a number a library put in an error message is masked too.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from channels.masking import mask_contact

#: Structured fields copied from a record's `extra` into the JSON object.
FIELDS = ("alert_id", "delivery_id", "deadline_id", "recipient_id", "zone", "zone_id",
          "worker", "route", "status")
#: What looks like a phone number (E.164 or long digit runs) or an email address.
_CONTACT = re.compile(r"\+\d[\d ]{6,18}\d|\b\d{9,15}\b|[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
#: Loggers too chatty at INFO for an operator.
NOISY = ("twilio.http_client", "apscheduler.executors", "uvicorn.access", "httpx")


def masked(text: str) -> str:
    """`text` with every phone number and email address in it masked."""
    return _CONTACT.sub(lambda m: mask_contact(m.group(0).replace(" ", "")), text)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, fields, traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": masked(record.getMessage()),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value if isinstance(value, int | float) else masked(str(value))
        if record.exc_info:
            entry["traceback"] = masked(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The plain format, masking contacts like the JSON one."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return masked(super().format(record))


def configure(level: int = logging.INFO, fmt: str = "text") -> None:
    """Route every logger (ours, uvicorn's, warnings) to one stderr handler."""
    if fmt not in ("text", "json"):
        raise ValueError(f"ALN_LOG_FORMAT must be 'text' or 'json', not {fmt!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        # Ours from an earlier call, or a plain console handler; a test runner's
        # capturing handlers stay.
        if isinstance(old, logging.StreamHandler) and (
                isinstance(old.formatter, JsonFormatter | TextFormatter)
                or old.stream in (sys.stderr, sys.stdout)):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uv = logging.getLogger(name)
        uv.handlers.clear()
        uv.propagate = True
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.captureWarnings(True)
    if fmt == "json":
        sys.excepthook = _log_uncaught


def is_json() -> bool:
    root = logging.getLogger()
    return any(isinstance(h.formatter, JsonFormatter) for h in root.handlers)


def announce(message: str, **fields: Any) -> None:
    """A start-up line: printed for a person, or logged as JSON for a shipper."""
    if is_json():
        logging.getLogger("aln").info(message, extra=fields)
    else:
        print(masked(message), flush=True)


def _log_uncaught(exc_type: Any, exc: BaseException, tb: Any) -> None:
    logging.getLogger("aln").critical("uncaught %s", exc_type.__name__,
                                      exc_info=(exc_type, exc, tb))
