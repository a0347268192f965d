"""A full disk (or a database turned read-only) in the middle of a fan-out.

`aln alert send` must stop with a clear error, nothing may be marked sent that the
provider did not get, and `aln worker --drain` finishes the job once space is back.
On SQLite the database lives on a real, small tmpfs that the test fills up (skipped
where mounting is not permitted); on PostgreSQL, whose disk we share, a trigger raises
the server's own errors (SQLSTATE 53100 disk_full, 25006 read_only_sql_transaction, as
a standby does after a failover) once the fan-out is under way.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select, text

from channels.simulator.testing import SimulatorHandle, run_simulator
from dispatcher.models import Contact, Delivery
from dispatcher.runtime import Runtime
from tests.bench.fixtures import bulk_roster
from tests.conftest import make_settings
from tests.engine import cli_env, sms_requests
from tests.helpers import wait_until
from tests.reliability.processes import ALN, outbox_outcome

RECIPIENTS = 600
CONCURRENCY = 10
#: Messages the provider has taken when the disk fills up.
BREAK_AFTER = 120
SECRET = "disk-full-secret"
MB = 1024 * 1024
#: Size of the SQLite test filesystem.
TMPFS_MB = 64
#: Room left to the database until the test fills the disk. aln.db + aln.db-wal peaked at
#: 5.1 MB in this test (0.9 MB + 4.2 MB, measured); a loaded machine that holds up the WAL's
#: checkpoints grows the WAL further (8 MB in all once filled up a CI run's disk before the
#: test did), hence the margin.
HEADROOM_MB = 24
#: Written at a time while filling: the disk fills in a few writes, before the fan-out ends.
CHUNK = b"\0" * MB


@dataclass(frozen=True)
class SmallDisk:
    """A small tmpfs and the file that fills it: made up front (filling must not need a
    new inode on a full disk) and already holding all but HEADROOM_MB of the space (so the
    fill at the break writes only the rest, quickly)."""

    mount: Path
    filler: Path

    def fill(self) -> None:
        """Write zeros into the filler until the filesystem has no space left."""
        with open(self.filler, "ab") as f:
            try:
                while True:
                    f.write(CHUNK)
                    f.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
        assert free_bytes(self.mount) < MB, "the disk was not filled"

    def free(self) -> None:
        """Give the filler's space back (truncated first: freed even were it still open)."""
        held = self.filler.stat().st_size
        os.truncate(self.filler, 0)
        self.filler.unlink()
        assert free_bytes(self.mount) >= held, "the filler's space did not come back"


def free_bytes(directory: Path) -> int:
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    """A tmpfs of TMPFS_MB mounted at a fresh directory (skips where not permitted)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_MB}m,mode=0700",
                           "tmpfs", str(mount)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {made.stderr.strip()}")
    try:
        filler = mount / "filler"
        with open(filler, "wb") as f:
            for _ in range(TMPFS_MB - HEADROOM_MB):
                f.write(CHUNK)
        yield SmallDisk(mount, filler)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def pg_trigger(url: str, sqlstate: str,
               when: str = "true") -> tuple[Callable[[], None], Callable[[], None]]:
    """Break and mend: writes to the outbox (those matching `when`) fail with `sqlstate`,
    then work again."""
    def run(*statements: str) -> None:
        rt = Runtime.open(make_settings(url, secret_key=SECRET))
        with rt.db.session() as s:
            for statement in statements:
                s.execute(text(statement))
        rt.close()

    def broken() -> None:
        run("CREATE OR REPLACE FUNCTION cannot_write() RETURNS trigger AS $$ BEGIN "
            f"RAISE EXCEPTION 'cannot write' USING ERRCODE = '{sqlstate}'; END $$ "
            "LANGUAGE plpgsql",
            "CREATE TRIGGER cannot_write BEFORE INSERT OR UPDATE ON deliveries "
            f"FOR EACH ROW WHEN ({when}) EXECUTE FUNCTION cannot_write()")

    def mended() -> None:
        run("DROP TRIGGER cannot_write ON deliveries")

    return broken, mended


@pytest.mark.slow
def test_disk_full_mid_fanout_on_sqlite(small_disk: SmallDisk) -> None:
    db_url = f"sqlite:///{small_disk.mount / 'aln.db'}"
    check_stop_then_drain(db_url, small_disk.fill, small_disk.free, "the disk is full")


@pytest.mark.slow
@pytest.mark.parametrize(("sqlstate", "said", "when"), [
    ("53100", "the database server's disk is full", "true"),
    ("25006", "the database is read-only", "true"),
    # Only the recording of results fails, claiming still works: the fan-out must stop
    # rather than send everyone while nothing it sends can be written down.
    ("53100", "the database server's disk is full", "NEW.provider_id IS NOT NULL")],
    ids=["disk-full", "read-only", "disk-full-when-recording"])
def test_disk_full_or_read_only_mid_fanout_on_postgres(postgres_url: str, sqlstate: str,
                                                       said: str, when: str) -> None:
    broken, mended = pg_trigger(postgres_url, sqlstate, when)
    check_stop_then_drain(postgres_url, broken, mended, said)


def check_stop_then_drain(db_url: str, broken: Callable[[], None], mended: Callable[[], None],
                          said: str) -> None:
    with run_simulator(latency_ms=50, callbacks=False) as sim:
        rt = Runtime.open(make_settings(db_url, secret_key=SECRET))
        phones = bulk_roster(rt, RECIPIENTS, zones=1)
        rt.close()
        env = cli_env(db_url, sim, SECRET, ALN_SEND_CONCURRENCY=str(CONCURRENCY),
                      ALN_LEASE_SECONDS="60")
        sender = subprocess.Popen(
            [ALN, "alert", "send", "--zone", "Chiapas", "--body", "Disk test",
             "--channel", "sms", "--json"], env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        try:
            wait_until(lambda: len(sms_requests(sim)) >= BREAK_AFTER or sender.poll() is not None,
                       timeout=60, interval=0.01, what=f"{BREAK_AFTER} messages sent")
            broken()
            out, err = sender.communicate(timeout=60)
        finally:
            if sender.poll() is None:
                sender.kill()
        before = len(sms_requests(sim))
        assert before < RECIPIENTS, "the fan-out finished before the database broke"
        assert sender.returncode == 3, err
        assert "Traceback" not in err
        # With --json the error is an RFC 9457 problem on stdout (issue 20).
        problem = json.loads(out)
        assert problem["status"] == 503, out
        flat = " ".join(problem["detail"].split())
        assert f"the database cannot be written: {said}" in flat, out
        assert "aln worker --drain" in flat
        check_nothing_marked_sent_that_was_not(db_url, sim)

        mended()
        drained = subprocess.run([ALN, "worker", "--drain"], env=env, capture_output=True,
                                 text=True, timeout=120)
        assert drained.returncode == 0, drained.stderr
        received = Counter(r["to"] for r in sms_requests(sim))
    assert set(received) == set(phones), "somebody was never sent the alert"
    states, flagged = outbox_outcome(db_url, SECRET)
    assert states == {"accepted": RECIPIENTS}, states
    assert {phone for phone, n in received.items() if n > 1} <= flagged


def check_nothing_marked_sent_that_was_not(db_url: str, sim: SimulatorHandle) -> None:
    """Every delivery recorded as handed off went to the provider; none is lost."""
    at_provider = {r["to"] for r in sms_requests(sim)}
    rt = Runtime.open(make_settings(db_url, secret_key=SECRET))
    with rt.db.session() as session:
        rows = session.execute(select(Delivery.state, Contact.value_enc)
                               .join(Contact, Contact.id == Delivery.contact_id)).all()
    rt.close()
    recorded = {rt.vault.decrypt(enc) for state, enc in rows if state != "pending"
                and state != "sending"}
    assert recorded <= at_provider, "a delivery was marked sent that the provider never got"
    assert len(rows) == RECIPIENTS
