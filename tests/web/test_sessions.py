"""Dashboard sessions end on the server: a copied cookie is worthless after logout or a
new password."""

from __future__ import annotations

from typing import Any

from typer.testing import CliRunner

from dispatcher.cli.main import app as cli
from tests.conftest import CONFIG_DIR
from tests.web.conftest import login


def _with_cookie(client: Any, cookie: str, path: str) -> int:
    client.cookies.clear()
    client.cookies.set("aln_session", cookie)
    return client.get(path, follow_redirects=False).status_code  # type: ignore[no-any-return]


def test_logout_ends_the_session_on_the_server(app_rt: Any) -> None:
    _, client, _ = app_rt
    csrf = login(client)
    stolen = client.cookies["aln_session"]
    assert _with_cookie(client, stolen, "/") == 200
    assert client.post("/logout", data={"csrf": csrf}, follow_redirects=False).status_code == 303
    assert _with_cookie(client, stolen, "/") == 303  # back to the login page
    assert _with_cookie(client, stolen, "/api/alerts") == 401
    login(client)  # a new session works
    assert client.get("/", follow_redirects=False).status_code == 200


def test_a_new_password_ends_existing_sessions(app_rt: Any) -> None:
    rt, client, _ = app_rt
    login(client)
    stolen = client.cookies["aln_session"]
    env = {"ALN_DATABASE_URL": rt.settings.database_url,
           "ALN_SECRET_KEY": rt.settings.secret_key, "ALN_CONFIG_DIR": str(CONFIG_DIR)}
    result = CliRunner().invoke(cli, ["officer", "passwd", "officer-officer",
                                      "--password", "a brand new passphrase"], env=env)
    assert result.exit_code == 0, result.output
    assert _with_cookie(client, stolen, "/") == 303
    login(client, password="a brand new passphrase")
    assert client.get("/", follow_redirects=False).status_code == 200
