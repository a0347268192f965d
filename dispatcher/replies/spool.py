"""Webhooks kept on local disk while the database cannot take them, replayed after.

By default Twilio retries a webhook only when it cannot connect, not when our answer
is an error (it calls the number's fallback URL, if one is set), so a "YES" that
arrives while PostgreSQL fails over, or while SQLite's disk is full, would be lost.

When a batch cannot be stored at all (even a request on its own, even kept aside
with its error), the intake writes each request here instead: one file per request,
encrypted like everything else that carries a phone number, written to a temporary
name, synced and renamed so a crash never leaves half a file. Twilio is answered
normally (no reply text: we do not know yet what the message means). As soon as a
batch commits again, the intake replays the files, oldest first; a request that was
stored after all is recognised as a repeat by its MessageSid.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dispatcher.crypto import Vault
from dispatcher.receipts import status_batch
from dispatcher.replies.inbound import InboundResult, sms_batch
from dispatcher.replies.voice import KEPT, gather_batch
from dispatcher.runtime import Runtime

log = logging.getLogger(__name__)

SUFFIX = ".req"
#: A kept request no configured key opens, set aside for a person (`aln keys rotate`
#: puts it back in line once a key does).
UNREADABLE_SUFFIX = ".unreadable"
#: Batch handlers whose requests may wait here, by name, with what the webhook is told
#: while its request waits.
SPOOLABLE: dict[str, tuple[Callable[[Runtime, Sequence[Any]], list[Any]], Any]] = {
    "sms_batch": (sms_batch, InboundResult(duplicate=False, answer=None)),
    "status_batch": (status_batch, False),
    "gather_batch": (gather_batch, KEPT),
}


def kept_files(directory: Path) -> list[Path]:
    """Every request kept in `directory`, waiting or set aside as unreadable, oldest first
    (what a key rotation rewrites and an erasure searches)."""
    if not directory.is_dir():
        return []
    return sorted([*directory.glob(f"*{SUFFIX}"), *directory.glob(f"*{UNREADABLE_SUFFIX}")])


class Spool:
    def __init__(self, directory: Path, vault: Vault) -> None:
        self.directory = directory
        self.vault = vault
        self._pending: bool | None = None  # unknown until first looked at

    def accepts(self, handler: Callable[..., Any]) -> bool:
        return getattr(handler, "__name__", "") in SPOOLABLE

    def put(self, handler: Callable[..., Any], payload: Any) -> Any:
        """Keep one request; what its webhook is answered meanwhile."""
        name = handler.__name__
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = self.vault.encrypt(json.dumps({"handler": name, "payload": payload},
                                             ensure_ascii=False))
        final = self.directory / f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}{SUFFIX}"
        tmp = final.with_suffix(".tmp")
        # 0600: the file is encrypted, but what it holds is a volunteer's message.
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        self._pending = True
        log.warning("database unavailable: a %s request was kept in %s until it is back",
                    name.removesuffix("_batch"), self.directory)
        return SPOOLABLE[name][1]

    def files(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob(f"*{SUFFIX}"))

    def replay(self, rt: Runtime) -> int:
        """Hand every kept request to its handler, oldest first; stop at the first that
        the database still cannot take (it stays for next time). How many were replayed."""
        if self._pending is False:
            return 0
        done = 0
        for path in self.files():
            try:
                raw = path.read_bytes()
            except FileNotFoundError:
                continue  # another serving process on this host replayed it first
            try:
                item = json.loads(self.vault.decrypt(raw))
                handler = SPOOLABLE[item["handler"]][0]
            except Exception:
                # Another key, or not ours: set aside for a person, never replayed blindly.
                path.replace(path.with_suffix(UNREADABLE_SUFFIX))
                log.error("kept request %s cannot be read with this key; set aside", path.name)
                continue
            try:
                handler(rt, [item["payload"]])
            except Exception:
                log.warning("the database still cannot take kept requests; retrying later")
                return done
            path.unlink(missing_ok=True)  # a repeat, if another process replayed it too
            done += 1
        self._pending = False
        if done:
            log.info("replayed %d request(s) kept while the database was unavailable", done)
        return done
