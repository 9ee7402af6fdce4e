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
    assert "IGNORED" in out and out.count("REFUSED") == 3
    assert "pushed 6, stored 6 at the centre" in out
    assert "visit K-1042 by P-17" in out and "(closed;" in out
    assert "6 events" in out
