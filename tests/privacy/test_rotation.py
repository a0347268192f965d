"""Key rotation: everything moves to the new key in resumable batches, readers use both
keys meanwhile, old links keep working, and the old key alone reads nothing after."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from dispatcher.crypto import Unreadable, Vault
from dispatcher.dispatch.outbox import send_alert
from dispatcher.dispatch.plan import AlertRequest
from dispatcher.models import AuditEvent, Contact, InboundMessage, Recipient
from dispatcher.privacy.rotation import rotate
from dispatcher.replies.inbound import receive_sms
from dispatcher.replies.spool import Spool
from dispatcher.roster.posts import ensure_post
from dispatcher.runtime import Runtime
from dispatcher.tokens import BadToken, make_ack_token, read_ack_token
from tests.bench.fixtures import bulk_roster
from tests.conftest import UNREACHABLE_PROVIDERS, make_settings, rt_with_roster

OLD = "test-secret-key-not-for-production"  # what rt_with_roster encrypts with
NEW = "the-new-key-after-rotation-0123456789"
ANA = "+529611230101"  # Chiapas primary in the sample roster


def rotated_runtime(database_url: str, **overrides: object) -> Runtime:
    """The runtime of a deployment mid-rotation: new key current, old key read-only."""
    return Runtime.open(make_settings(database_url, secret_key=NEW,
                                      previous_secret_keys=f" {OLD} ,",
                                      **UNREACHABLE_PROVIDERS, **overrides))


@pytest.fixture
def old_rt(database_url: str) -> Iterator[Runtime]:
    runtime = rt_with_roster(database_url)
    yield runtime
    runtime.close()


def blobs(rt: Runtime) -> list[bytes]:
    with rt.db.session() as session:
        return [*session.scalars(select(Contact.value_enc)),
                *session.scalars(select(InboundMessage.raw_enc))]


def assert_all_under(rt: Runtime, secret: str) -> None:
    only = Vault.from_secret(secret.encode())
    gone = Vault.from_secret((OLD if secret == NEW else NEW).encode())
    stored = blobs(rt)
    assert stored
    assert all(only.decrypt_current(b) is not None for b in stored)
    assert all(gone.decrypt_current(b) is None for b in stored)
    with rt.db.session() as session:
        for enc, digest in session.execute(select(Contact.value_enc, Contact.value_hash)):
            assert digest == only.lookup_hash(only.decrypt(enc))


def test_previous_keys_read_but_never_write() -> None:
    old = Vault.from_secret(OLD.encode())
    both = Vault.from_secret(NEW.encode(), [OLD.encode()])
    blob = old.encrypt("+529611230101")
    assert both.decrypt(blob) == "+529611230101"
    assert both.decrypt_current(blob) is None
    assert old.decrypt_current(both.encrypt("x")) is None
    assert both.lookup_hashes("+529611230101") == [both.lookup_hash("+529611230101"),
                                                   old.lookup_hash("+529611230101")]
    with pytest.raises(Unreadable):
        Vault.from_secret(NEW.encode()).decrypt(blob)


def test_rotation_survives_a_crash_between_batches(old_rt: Runtime, database_url: str) -> None:
    receive_sms(old_rt.db, old_rt.settings, old_rt.vault,
                {"MessageSid": "SM1", "From": ANA, "To": "+15005550006", "Body": "road closed"})
    rt = rotated_runtime(database_url)
    try:
        class Crash(Exception):
            pass

        def crash_after_two(kind: str, seen: int) -> None:
            if kind == "contacts" and seen >= 6:
                raise Crash

        with pytest.raises(Crash):
            rotate(rt, batch_size=3, progress=crash_after_two)
        new_only = Vault.from_secret(NEW.encode())
        under_new = [b for b in blobs(rt) if new_only.decrypt_current(b) is not None]
        assert len(under_new) == 6  # two committed batches, nothing of the third
        report = rotate(rt, batch_size=3)
        assert report.contacts.current == 6 and report.unreadable == []
        assert report.inbound.rewritten == 1
        assert_all_under(rt, NEW)
        with rt.db.session() as session:
            inbound = session.scalars(select(InboundMessage)).one()
            assert inbound.sender_hash == new_only.lookup_hash(ANA)
            actions = list(session.scalars(select(AuditEvent.action)
                                           .where(AuditEvent.action.like("keys.%"))
                                           .order_by(AuditEvent.id)))
        assert actions == ["keys.rotation_started", "keys.rotation_started", "keys.rotated"]
        assert rotate(rt).contacts.rewritten == 0  # nothing left: a rerun is a no-op
    finally:
        rt.close()


def test_reply_matches_during_rotation(old_rt: Runtime, database_url: str) -> None:
    with old_rt.db.session() as session:
        post = ensure_post(session, old_rt.settings, old_rt.vault)
        sent = send_alert(session, old_rt.settings, post,
                          AlertRequest(zones=["Chiapas"], body="Test", ack_window_seconds=600))
    rt = rotated_runtime(database_url)
    try:  # the new key is in force; Ana's row is still hashed under the old one
        receive_sms(rt.db, rt.settings, rt.vault, {"MessageSid": "SM2", "From": ANA,
                                                   "To": "+15005550006", "Body": "YES"})
        with rt.db.session() as session:
            states = set(session.scalars(select(Recipient.state)
                                         .where(Recipient.alert_id == sent.alert_id)))
        assert "acknowledged" in states
    finally:
        rt.close()


def test_old_link_acknowledges_until_it_expires() -> None:
    old = Vault.from_secret(OLD.encode())
    token = make_ack_token(old, 12, 3)
    assert read_ack_token(Vault.from_secret(NEW.encode(), [OLD.encode()]), token, 3600) == (12, 3)
    with pytest.raises(BadToken, match="not valid"):
        read_ack_token(Vault.from_secret(NEW.encode()), token, 3600)
    with pytest.raises(BadToken, match="expired"):
        read_ack_token(Vault.from_secret(NEW.encode(), [OLD.encode()]), token, -1)


def test_spool_files_move_to_the_new_key(old_rt: Runtime, database_url: str) -> None:
    spool_dir = Path(str(old_rt.settings.spool_path()))
    if old_rt.settings.sqlite_path() is None:
        pytest.skip("the spool is a local directory; covered on SQLite")
    from dispatcher.replies.inbound import sms_batch

    Spool(spool_dir, old_rt.vault).put(sms_batch, {"From": ANA, "Body": "YES"})
    aside = spool_dir / "0001-set-aside.unreadable"
    aside.write_bytes(old_rt.vault.encrypt(json.dumps({"handler": "sms_batch",
                                                       "payload": {"Body": "x"}})))
    rt = rotated_runtime(database_url)
    try:
        report = rotate(rt)
    finally:
        rt.close()
    assert report.spool.rewritten == 2
    files = sorted(spool_dir.iterdir())
    assert [f.suffix for f in files] == [".req", ".req"]
    new_only = Vault.from_secret(NEW.encode())
    for f in files:
        assert json.loads(new_only.decrypt(f.read_bytes()))["handler"] == "sms_batch"
        assert f.stat().st_mode & 0o777 == 0o600


def test_lost_key_is_named_not_a_traceback(old_rt: Runtime, cli_env: dict[str, str]) -> None:
    env = {**os.environ, **cli_env, "ALN_SECRET_KEY": NEW}
    env.pop("ALN_PREVIOUS_SECRET_KEYS", None)
    done = subprocess.run([sys.executable, "-m", "dispatcher.cli.main", "keys", "rotate"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "contact 1 (sms +52" in done.stderr.replace("\n", " ")
    assert "ALN_PREVIOUS_SECRET_KEYS" in done.stderr


def test_killed_rotation_reruns_to_completion(sqlite_url: str, tmp_path: Path) -> None:
    """`aln keys rotate` SIGKILLed after some batches committed; rerun finishes it."""
    setup = Runtime.open(make_settings(sqlite_url, secret_key=OLD))
    bulk_roster(setup, 3000)
    setup.close()
    env = {**os.environ, "ALN_DATABASE_URL": sqlite_url, "ALN_SECRET_KEY": NEW,
           "ALN_PREVIOUS_SECRET_KEYS": OLD, "ALN_POST": "mexico-city"}
    cmd = [sys.executable, "-m", "dispatcher.cli.main", "keys", "rotate", "--batch-size", "20"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    seen = 0
    for line in proc.stdout:
        if line.startswith("contacts:"):
            seen = int(line.split()[1])
            if seen >= 200:
                break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    rt = Runtime.open(make_settings(sqlite_url, secret_key=NEW, previous_secret_keys=OLD))
    try:
        new_only = Vault.from_secret(NEW.encode())
        done = sum(new_only.decrypt_current(b) is not None for b in blobs(rt))
        assert seen <= done < 3000, "killed mid-way"
        rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr
        assert_all_under(rt, NEW)
    finally:
        rt.close()


def test_lost_key_fails_the_delivery_not_the_sender(old_rt: Runtime, database_url: str) -> None:
    from dispatcher.dispatch.sender import UNREADABLE_CONTACT, Sender
    from dispatcher.models import Delivery

    with old_rt.db.session() as session:
        post = ensure_post(session, old_rt.settings, old_rt.vault)
        sent = send_alert(session, old_rt.settings, post,
                          AlertRequest(zones=["Chiapas"], body="Test", ack_window_seconds=600))
    lost = Runtime.open(make_settings(database_url, secret_key=NEW, **UNREACHABLE_PROVIDERS))
    try:
        assert Sender(lost.db, lost.settings, lost.vault, {}, "w1")._claim(sent.alert_id) == []
        with lost.db.session() as session:
            errors = set(session.scalars(select(Delivery.error_message)
                                         .where(Delivery.alert_id == sent.alert_id)))
        assert UNREADABLE_CONTACT in errors
    finally:
        lost.close()


def test_roster_list_names_the_unreadable_contact(old_rt: Runtime,
                                                  cli_env: dict[str, str]) -> None:
    env = {**os.environ, **cli_env, "ALN_SECRET_KEY": NEW}
    done = subprocess.run([sys.executable, "-m", "dispatcher.cli.main", "roster", "list"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "(sms +52" in done.stderr.replace("\n", " ")
    assert "ALN_PREVIOUS_SECRET_KEYS" in done.stderr
