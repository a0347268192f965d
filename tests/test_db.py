"""Migrations from an empty database, on SQLite and PostgreSQL; the embedded secret key."""

from __future__ import annotations

import stat
from pathlib import Path

from sqlalchemy import inspect

from dispatcher.db import Database, needs_migration
from dispatcher.models import Base
from dispatcher.settings import Settings
from tests.conftest import CONFIG_DIR


def test_first_use_creates_every_table(settings: Settings) -> None:
    db = Database(settings)
    tables = set(inspect(db.engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    assert not needs_migration(db.engine)
    db.dispose()
    again = Database(settings)  # a second open migrates nothing and keeps working
    assert not needs_migration(again.engine)
    again.dispose()


def test_embedded_secret_key_file_is_private_and_stable(tmp_path: Path) -> None:
    s = Settings(database_url=f"sqlite:///{tmp_path / 'aln.db'}", config_dir=CONFIG_DIR)
    key = s.secret
    key_file = tmp_path / ".aln-secret-key"
    assert key_file.exists()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    again = Settings(database_url=f"sqlite:///{tmp_path / 'aln.db'}", config_dir=CONFIG_DIR)
    assert again.secret == key
