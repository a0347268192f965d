"""The officer API fuzzed as a client would see it: schemathesis drives the served
`/api/openapi.json` of a live `aln serve` (real database, worker, provider simulator)
with an officer's token, every check on, the stateful phase included, and must find
nothing: no 5xx, no status or body the schema does not list, no schema-valid request
refused, no bad input accepted.

`make test` runs a fixed seed and a bounded number of examples; `make soak` many more
(ALN_FUZZ_EXAMPLES, ALN_FUZZ_STEPS, ALN_FUZZ_SEED).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dispatcher.models import Response
from dispatcher.web.auth import add_officer
from tests.helpers import wait_until

#: Examples per operation and phase, steps of the stateful phase, and the seed. 20
#: examples make about 1,100 requests (40 made `make test`'s longest file); `make soak`
#: runs 500.
EXAMPLES = int(os.environ.get("ALN_FUZZ_EXAMPLES", "20"))
STEPS = int(os.environ.get("ALN_FUZZ_STEPS", "20"))
SEED = int(os.environ.get("ALN_FUZZ_SEED", "20"))

#: Domain rules the schema cannot state (a zone or template must exist in the post's
#: configuration, a window at most 7 days): a schema-valid alert may be refused with 422.
#: Everywhere else, a schema-valid request must never be.
CONFIG = """
[dictionaries.inbox]
values = {inbox_ids}

[parameters]
"path.response_id" = {{ dictionary = "inbox", probability = 0.5 }}

[phases.stateful]
max-steps = {steps}

[[operations]]
include-operation-id = "sendAlert"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422"]
"""


#: Chiapas's primary in the sample roster (her bare "YES" to two alerts is ambiguous).
ANA = "+529611230101"


def seed_replies(engine: Any) -> list[int]:
    """Rows for the inbox and attach routes to find (else every call is a 404): inbox
    texts, and an ambiguous "YES" from a volunteer two alerts wait on."""
    with engine.rt.db.session() as s:
        rows = [Response(kind=kind, text=f"{kind} {i}", urgent=kind == "help")
                for i, kind in enumerate(["field_report", "help", "unparsed"] * 2)]
        s.add_all(rows)
        s.flush()
        ids = [r.id for r in rows]
    first, second = engine.send(["Chiapas"]), engine.send(["Chiapas"])
    engine.sim.inbound(ANA, "YES")
    wait_until(lambda: engine.status(second)["unattached_replies"], 15,
               what="Ana's ambiguous YES")
    return ids + [r["id"] for r in engine.status(first)["unattached_replies"]]


def run_schemathesis(engine: Any, tmp_path: Path, token: str) -> tuple[int, str, float]:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG.format(inbox_ids=seed_replies(engine), steps=STEPS))
    cli = Path(sys.executable).with_name("schemathesis")
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    started = time.monotonic()
    proc = subprocess.run(
        [str(cli), "--config-file", str(config), "--no-color", "run",
         f"{engine.url}/api/openapi.json", "-H", f"Authorization: Bearer {token}",
         "--checks", "all", "--phases", "examples,coverage,fuzzing,stateful",
         "--seed", str(SEED), "--max-examples", str(EXAMPLES), "--workers", "1",
         # A hang, not speed, is what fails here (speed lives in tests/bench): "all"
         # checks include a 10 s response limit a loaded machine can miss.
         "--request-timeout", "20", "--max-response-time", "20",
         "--generation-database", "none"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=900)
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started


@pytest.mark.slow
def test_the_officer_api_survives_the_fuzzer(database_url: str, engine_factory: Any,
                                             tmp_path: Path) -> None:
    """On SQLite, and on PostgreSQL (whose 32-bit integers overflow where SQLite's do not)."""
    engine = engine_factory(database_url)
    with engine.rt.db.session() as s:
        token = add_officer(s, "fuzzer", "officer")
    code, output, seconds = run_schemathesis(engine, tmp_path, token)
    summary = output[output.rfind("SUMMARY"):] if "SUMMARY" in output else output[-3000:]
    assert code == 0, f"schemathesis found failures (seed {SEED}):\n{output[-12000:]}"
    generated = re.search(r"(\d+) generated", output)
    assert generated and int(generated.group(1)) >= 500, summary
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert re.search(rf"✅ {phase}", output), f"{phase} did not run and pass:\n{summary}"
    warnings = output[output.find("WARNINGS"):output.find("SUMMARY")] \
        if "WARNINGS" in output else ""
    print(f"\nfuzz ({database_url.split(':')[0]}): {generated.group(1)} requests, "
          f"{seconds:.1f} s, seed {SEED}\n{warnings}")
