"""What every entry point (CLI, server, worker, tests) opens once: settings, database, vault."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from dispatcher.crypto import Vault
from dispatcher.db import Database
from dispatcher.settings import Settings, get_settings


@dataclass
class Runtime:
    settings: Settings
    db: Database
    vault: Vault

    @classmethod
    def open(cls, settings: Settings | None = None) -> Runtime:
        """Open (creating and migrating on first use) the configured database."""
        settings = settings or get_settings()
        # The secret first: a missing ALN_SECRET_KEY is refused before the database is
        # touched (creating a schema whose contacts nothing could then read).
        vault = Vault.from_secret(settings.secret, settings.previous_secrets)
        db = Database(settings)
        return cls(settings=settings, db=db, vault=vault)

    def close(self) -> None:
        self.db.dispose()


def configure_logging(level: int = logging.INFO, settings: Settings | None = None) -> None:
    """Logging as `ALN_LOG_FORMAT` asks (text or JSON); see `dispatcher.logs`."""
    from dispatcher import logs

    fmt = (settings or get_settings()).log_format
    logs.configure(level, fmt)
