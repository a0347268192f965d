"""/metrics after a real alert: parsed with prometheus_client's own parser; /readyz flips
when the database cannot be written."""

from __future__ import annotations

import re
import sqlite3
import time
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from tests.engine import Engine
from tests.helpers import wait_until
from tests.integration.test_alert_path import ANA, signed_sms

#: A phone number or an email address, as they must never appear in a label.
PERSONAL = re.compile(r"\+?\d{7,}|@")


def scrape(engine: Engine, **headers: str) -> dict[str, Any]:
    response = httpx.get(f"{engine.url}/metrics", headers=headers)
    assert response.status_code == 200, response.text
    return {f.name: f for f in text_string_to_metric_families(response.text)}


def sample(families: dict[str, Any], name: str, suffix: str = "",
           **labels: str) -> float:
    values = [s.value for s in families[name].samples
              if s.name == name + suffix and all(s.labels.get(k) == v for k, v in labels.items())]
    assert values, f"no {name}{suffix} sample with {labels}"
    return float(sum(values))


def webhook_count(families: dict[str, Any]) -> float:
    """Requests this process answered on the SMS webhook (other tests' included)."""
    family = families.get("aln_http_request_seconds")
    return sum(s.value for s in family.samples if s.name == "aln_http_request_seconds_count"
               and s.labels.get("route") == "/webhooks/twilio/sms"
               and s.labels.get("status") == "200") if family else 0.0


def test_metrics_after_a_real_alert_count_deliveries_acks_and_webhooks(engine: Engine) -> None:
    before = webhook_count(scrape(engine))
    alert_id = engine.send(["Chiapas"], channels=["sms"], ack_window_seconds=600)
    assert signed_sms(engine, ANA, f"YES {engine.code(alert_id)}", "SM" + "7" * 32
                      ).status_code == 200
    engine.wait_zone(alert_id, "Chiapas", "acknowledged")
    families = scrape(engine)
    assert sample(families, "aln_deliveries", "_total", channel="sms", provider="twilio") >= 1
    assert sample(families, "aln_acknowledgements", "_total") == 1
    assert sample(families, "aln_time_to_acknowledge_seconds", "_count") == 1
    assert sample(families, "aln_time_to_acknowledge_seconds", "_bucket", le="+Inf") == 1
    assert sample(families, "aln_outbox_backlog", channel="sms") == 0
    assert sample(families, "aln_deadline_backlog", due="all") == 0  # covered: cancelled
    assert webhook_count(families) == before + 1
    assert sample(families, "aln_spool_depth") == 0
    assert "aln_escalation_lateness_seconds" in families
    for family in families.values():
        for s in family.samples:
            for value in s.labels.values():
                assert not PERSONAL.search(value), (s.name, s.labels)


def test_metrics_can_require_a_token(engine_factory: Any) -> None:
    engine = engine_factory(metrics_token="s3cret-metrics")
    assert httpx.get(f"{engine.url}/metrics").status_code == 401
    assert httpx.get(f"{engine.url}/metrics",
                     headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert "aln_deliveries" in scrape(engine, Authorization="Bearer s3cret-metrics")


def test_readiness_fails_fast_while_another_process_holds_the_write_lock(
        database_url: str, engine_factory: Any) -> None:
    engine = engine_factory(database_url)
    assert httpx.get(f"{engine.url}/readyz").status_code == 200
    if database_url.startswith("sqlite"):
        path = database_url.split("///", 1)[1]
        holder: Any = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        release = lambda: holder.execute("ROLLBACK")  # noqa: E731
    else:
        pg = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
        holder = pg.connect()
        holder.execute(text("SELECT * FROM health_probes FOR UPDATE"))
        release = holder.rollback
    try:
        started = time.monotonic()
        response = httpx.get(f"{engine.url}/readyz", timeout=10)
        assert response.status_code == 503
        assert "not writable" in response.json()["reason"]
        assert time.monotonic() - started < 5  # the engine itself would wait 30 s
    finally:
        release()
        holder.close()
    wait_until(lambda: httpx.get(f"{engine.url}/readyz").status_code == 200, timeout=10,
               what="ready again")


def test_readiness_reports_webhooks_waiting_on_disk(engine: Engine) -> None:
    spool = engine.rt.settings.spool_path()
    spool.mkdir(parents=True, exist_ok=True)
    (spool / "00000000000000000001-deadbeef.req").write_bytes(b"x")
    response = httpx.get(f"{engine.url}/readyz")
    assert response.status_code == 503 and "wait to be replayed" in response.json()["reason"]


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def test_readiness_fails_while_the_database_refuses_writes(database_url: str,
                                                           engine_factory: Any) -> None:
    """A read-only database (PostgreSQL in recovery, a remounted disk): every write fails
    as the database says so; here the database is told to say it for the probe's table."""
    engine = engine_factory(database_url)
    assert httpx.get(f"{engine.url}/readyz").status_code == 200
    if database_url.startswith("sqlite"):
        make = ("CREATE TRIGGER probe_readonly BEFORE UPDATE ON health_probes BEGIN "
                "SELECT RAISE(ABORT, 'attempt to write a readonly database'); END")
        drop = ["DROP TRIGGER probe_readonly"]
        setup = [make]
    else:
        setup = ["CREATE FUNCTION probe_readonly() RETURNS trigger AS $$ BEGIN RAISE "
                 "EXCEPTION 'cannot execute UPDATE in a read-only transaction' USING "
                 "ERRCODE = '25006'; END $$ LANGUAGE plpgsql",
                 "CREATE TRIGGER probe_readonly BEFORE INSERT OR UPDATE ON health_probes "
                 "FOR EACH ROW EXECUTE FUNCTION probe_readonly()"]
        drop = ["DROP TRIGGER probe_readonly ON health_probes", "DROP FUNCTION probe_readonly()"]
    with engine.rt.db.engine.begin() as conn:
        for statement in setup:
            conn.execute(text(statement))
    try:
        response = httpx.get(f"{engine.url}/readyz", timeout=10)
        assert response.status_code == 503
        assert "readonly" in response.json()["reason"].replace("-", "").replace(" ", "")
    finally:
        with engine.rt.db.engine.begin() as conn:
            for statement in drop:
                conn.execute(text(statement))
    assert httpx.get(f"{engine.url}/readyz").status_code == 200
