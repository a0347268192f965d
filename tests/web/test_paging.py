"""The API's lists page with a bounded `limit` and an opaque cursor, newest first, and a
client paging through while rows are inserted sees every earlier row exactly once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from dispatcher import audit
from dispatcher.models import Response
from dispatcher.web import paging
from dispatcher.web.limits import MAX_ROW_ID
from tests.web.conftest import bearer


def walk(client: Any, path: str, h: dict[str, str], limit: int,
         between: Callable[[], None] = lambda: None) -> list[dict[str, Any]]:
    """Every item of a list, a page at a time, calling `between` after each page."""
    items: list[dict[str, Any]] = []
    cursor = None
    sep = "&" if "?" in path else "?"
    for _ in range(100):
        url = f"{path}{sep}limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        r = client.get(url, headers=h)
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["items"]) <= limit
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
        between()
    raise AssertionError("paging never ended")


def add_inbox(rt: Any, n: int, urgent: bool = False) -> None:
    with rt.db.session() as s:
        for i in range(n):
            s.add(Response(kind="help" if urgent else "field_report", text=f"t{i}",
                           urgent=urgent))


def add_audit(rt: Any, n: int) -> None:
    with rt.db.session() as s:
        for i in range(n):
            audit.record(s, "test", "test.event", n=i)


def send(client: Any, h: dict[str, str], n: int) -> None:
    for _ in range(n):
        r = client.post("/api/alerts", json={"zones": ["Oaxaca"], "body": "x"}, headers=h)
        assert r.status_code == 200, r.text


@pytest.mark.parametrize("path", ["/api/alerts", "/api/inbox", "/api/audit", "/api/roster"])
def test_pages_are_newest_first_and_stable_under_inserts(app_rt: Any, path: str) -> None:
    rt, client, tokens = app_rt
    h = bearer(tokens["officer"])
    add = {"/api/alerts": lambda n: send(client, h, n), "/api/inbox": lambda n: add_inbox(rt, n),
           "/api/audit": lambda n: add_audit(rt, n), "/api/roster": lambda n: None}[path]
    add(7)
    before = walk(client, path, h, limit=500)
    key = "membership_id" if path == "/api/roster" else "id"
    ids = [i[key] for i in before]
    assert ids == sorted(ids, reverse=True) and len(ids) >= 7
    # Paging through in small pages while rows are added shows each earlier row once.
    during = walk(client, path, h, limit=3, between=lambda: add(2))
    seen = [i[key] for i in during]
    assert len(seen) == len(set(seen)), "a row was shown twice"
    assert [i for i in seen if i <= ids[0]] == ids, "a row was skipped or reordered"


def test_the_inbox_pages_urgent_first_then_newest(app_rt: Any) -> None:
    rt, client, tokens = app_rt
    add_inbox(rt, 3)
    add_inbox(rt, 2, urgent=True)
    add_inbox(rt, 2)
    items = walk(client, "/api/inbox", bearer(tokens["viewer"]), limit=2)
    assert [i["urgent"] for i in items] == [True] * 2 + [False] * 5
    plain = [i["id"] for i in items if not i["urgent"]]
    assert plain == sorted(plain, reverse=True)


def test_a_page_defaults_to_100_and_limit_is_bounded(app_rt: Any) -> None:
    rt, client, tokens = app_rt
    h = bearer(tokens["viewer"])
    add_audit(rt, 130)
    page = client.get("/api/audit", headers=h).json()
    assert len(page["items"]) == paging.DEFAULT_PAGE and page["next_cursor"]
    for path in ("/api/alerts", "/api/inbox", "/api/roster", "/api/audit"):
        for bad in ("0", "-1", "501", "99999999999999999999999", "x"):
            r = client.get(f"{path}?limit={bad}", headers=h)
            assert r.status_code == 422 and "limit" in r.json()["detail"], (path, bad, r.text)
    assert len(client.get("/api/audit?format=csv", headers=h).text.splitlines()) > 130


@pytest.mark.parametrize("cursor", ["", "A", "1.2.3", "zzzzzzzz", "-1", "1;drop", "%00"])
def test_a_cursor_not_of_the_documented_form_is_422(app_rt: Any, cursor: str) -> None:
    rt, client, tokens = app_rt
    r = client.get(f"/api/alerts?cursor={cursor}", headers=bearer(tokens["viewer"]))
    assert r.status_code == 422 and "cursor" in r.json()["detail"], r.text


def test_any_cursor_of_the_documented_form_is_a_position(app_rt: Any) -> None:
    """A cursor past every row (however large) is the start; none reaches the database
    as an overflow."""
    rt, client, tokens = app_rt
    h = bearer(tokens["viewer"])
    add_inbox(rt, 2)
    for path in ("/api/alerts", "/api/inbox", "/api/roster", "/api/audit"):
        for cursor in ("zzzzzzz", "zzzzzzz.zzzzzzz", "0", "1.0"):
            r = client.get(f"{path}?cursor={cursor}", headers=h)
            assert r.status_code == 200, (path, cursor, r.text)
    assert paging.decode("zzzzzzz", 1) == (None,)
    assert paging.decode(paging.encode(MAX_ROW_ID), 1) == (MAX_ROW_ID,)
    assert paging.decode(None, 2) == (None, None)
    assert paging.decode(paging.encode(1, 12345), 2) == (1, 12345)
