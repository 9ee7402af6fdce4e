"""The README's first command: `nyckelfri demo` shows visits that travelled to the centre."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_demo_shows_visits_that_travelled_agent_to_centre():
    result = subprocess.run([sys.executable, "-m", "agent", "demo"], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "REGISTERED: arrival at K-1042" in out and "REGISTERED: departure" in out
    assert "IGNORED" in out and out.count("REFUSED: ") == 5
    assert "pushed 10, stored 10 at the centre" in out
    assert "visit K-1042 by P-17" in out and "(closed;" in out
    assert "10 events" in out
    # the NTAG 424 DNA: provisioned through the centre, its keys pulled, each genuine
    # tap registered, the replayed URL and the magic copy refused and flagged
    assert "tag provision: NTAG 424 DNA 04C767F2066180 for K-3003" in out
    assert "SUN keys of 1 tag(s)" in out
    assert "REGISTERED: arrival at K-3003" in out and "REGISTERED: departure from K-3003" in out
    assert "secure code was already used" in out and "gave no secure code" in out
    assert "ALERT tag_copy_suspected: tag 04C767F2066180 of client K-3003: 2 read(s)" in out
