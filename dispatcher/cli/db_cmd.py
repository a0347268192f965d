"""`aln db backup PATH`, `aln db restore PATH [--force]`: copies an operator can trust."""

from __future__ import annotations

from pathlib import Path

import typer

from dispatcher import backup as backups
from dispatcher.cli.common import console, handle_errors
from dispatcher.settings import get_settings

app = typer.Typer(help="Back up and restore the database.", no_args_is_help=True)


@app.command("backup")
@handle_errors
def backup_cmd(path: Path = typer.Argument(..., help="Where to write the copy (mode 0600)."),
               force: bool = typer.Option(False, "--force", help="Replace an existing file.")
               ) -> None:
    """A consistent copy of the SQLite database, safe while aln serve runs."""
    settings = get_settings()
    copied = backups.backup(settings, path, force=force)
    console.print(f"backed up {copied.alerts} alert(s), {copied.bytes:,} bytes, to {copied.path}",
                  markup=False, highlight=False)
    console.print("The contacts in it are encrypted: keep ALN_SECRET_KEY (or .aln-secret-key) "
                  "safe and apart from the backup, or it cannot be read.", markup=False)


@app.command("restore")
@handle_errors
def restore_cmd(path: Path = typer.Argument(..., help="A file made by aln db backup."),
                force: bool = typer.Option(False, "--force",
                                           help="Replace the database that is there now.")
                ) -> None:
    """Put a backup in place of the configured SQLite database (stop aln serve first)."""
    settings = get_settings()
    copied = backups.restore(settings, path, force=force)
    console.print(f"restored {copied.alerts} alert(s) into {copied.path}", markup=False,
                  highlight=False)
