"""The systemd units in deploy/ pass `systemd-analyze verify` (skipped where systemd's
tools are not installed: `apt-get install -y systemd` provides them on Debian)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNITS = ["aln-serve.service", "aln-worker.service"]
#: Where the units expect the installed command; the test points them at this checkout's.
INSTALLED_ALN = "/opt/aln/.venv/bin/aln"


@pytest.mark.parametrize("unit", UNITS)
def test_unit_verifies(unit: str, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt-get install -y systemd)")
    aln = Path(sys.executable).with_name("aln")
    text = (DEPLOY / unit).read_text()
    assert INSTALLED_ALN in text
    copy = tmp_path / unit
    copy.write_text(text.replace(INSTALLED_ALN, str(aln)))
    done = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and unit not in done.stderr, done.stderr


@pytest.mark.parametrize("unit", UNITS)
def test_unit_runs_the_documented_command_privately(unit: str) -> None:
    text = (DEPLOY / unit).read_text()
    command = "serve --host 127.0.0.1" if "serve" in unit else "worker"
    assert f"ExecStart={INSTALLED_ALN} {command}" in text
    assert "UMask=0077" in text and "EnvironmentFile=/etc/aln/aln.env" in text
