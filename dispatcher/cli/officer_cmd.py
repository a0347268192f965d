"""`aln officer add|list|revoke|passwd`: who may use the API and the dashboard."""

from __future__ import annotations

import typer
from rich.table import Table
from sqlalchemy import select, update

from dispatcher import audit
from dispatcher.cli.common import console, handle_errors, print_json, runtime
from dispatcher.errors import InvalidInput
from dispatcher.models import ApiToken, Officer
from dispatcher.web.auth import add_officer, get_officer, hash_password

app = typer.Typer(help="Officers and their API tokens.", no_args_is_help=True)

#: Shortest dashboard password accepted.
MIN_PASSWORD = 10


@app.command("add")
@handle_errors
def add(name: str = typer.Argument(...),
        role: str = typer.Option("officer", "--role", help="admin, officer or viewer")) -> None:
    """Create an officer and print their API token (shown this once only)."""
    with runtime() as rt, rt.db.session() as session:
        token = add_officer(session, name, role)
    console.print(f"officer '{name}' ({role}) created. API token (shown once, keep it safe):")
    typer.echo(token)


@app.command("list")
@handle_errors
def list_officers(as_json: bool = typer.Option(False, "--json")) -> None:
    with runtime() as rt, rt.db.session() as session:
        rows = [{"name": o.name, "role": o.role, "disabled": o.disabled,
                 "has_password": bool(o.password_hash),
                 "tokens": sum(1 for t in o.tokens if not t.revoked)}
                for o in session.scalars(select(Officer).order_by(Officer.name))]
    if as_json:
        print_json(rows)
        return
    table = Table("Name", "Role", "Password", "Active tokens", "Disabled")
    for r in rows:
        table.add_row(str(r["name"]), str(r["role"]), "yes" if r["has_password"] else "no",
                      str(r["tokens"]), "yes" if r["disabled"] else "no")
    console.print(table)


@app.command("revoke")
@handle_errors
def revoke(name: str = typer.Argument(...)) -> None:
    """Revoke every API token of an officer and disable their dashboard login."""
    with runtime() as rt, rt.db.session() as session:
        officer = get_officer(session, name)
        session.execute(update(ApiToken).where(ApiToken.officer_id == officer.id)
                        .values(revoked=True))
        officer.disabled = True
        audit.record(session, "cli", "officer.revoked", officer=name)
    console.print(f"officer '{name}' revoked")


@app.command("passwd")
@handle_errors
def passwd(name: str = typer.Argument(...),
           password: str = typer.Option(..., "--password", prompt=True, hide_input=True,
                                        confirmation_prompt=True)) -> None:
    """Set an officer's dashboard password."""
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"a password needs at least {MIN_PASSWORD} characters")
    with runtime() as rt, rt.db.session() as session:
        officer = get_officer(session, name)
        officer.password_hash = hash_password(password)
        audit.record(session, "cli", "officer.password_set", officer=name)
    console.print(f"password set for '{name}'")
