"""The simulators and `tag read` as a person runs them: separate processes, real drivers."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from agent.cli import EXIT_REFUSED

pytestmark = pytest.mark.slow

NYCKELFRI = [sys.executable, "-m", "agent"]
URI = "https://nyckelfri.example/t/K-7"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NYCKELFRI, *args], capture_output=True, text=True, timeout=timeout,
                          check=False)


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*NYCKELFRI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_sim_tag_read_by_tag_read_over_udp():
    port = free_udp_port()
    sim = start("sim", "tag", "--port", str(port), "--uid", "04A1B2C3D4E5F6", "--uri", URI,
                "--product", "NTAG213", "--seconds", "20")
    try:
        result = run("tag", "read", "--reader", f"udp:127.0.0.1:{port}", "--json",
                     "--timeout", "15")
    finally:
        sim.terminate()
        sim.wait(10)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert (info["uid"], info["product"], info["problem"]) == ("04A1B2C3D4E5F6", "NXP NTAG213",
                                                               None)
    assert info["ndef"][0]["uri"] == URI and len(info["signature"]) == 64


def test_sim_pn532_read_by_tag_read():
    sim = start("sim", "pn532", "--uid", "04A1B2C3D4E5F6", "--uri", URI, "--seconds", "20")
    try:
        assert sim.stdout is not None
        path = sim.stdout.readline().strip()
        assert path.startswith("serial:/dev/pts/") and path.endswith(":pn532")
        result = run("tag", "read", "--reader", path, "--json", "--timeout", "15")
    finally:
        sim.terminate()
        sim.wait(10)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["ndef"][0]["uri"] == URI


def test_tag_read_of_garbage_ndef_exits_as_refused():
    port = free_udp_port()
    sim = start("sim", "tag", "--port", str(port), "--garbage-ndef", "--seconds", "20")
    try:
        result = run("tag", "read", "--reader", f"udp:127.0.0.1:{port}", "--timeout", "15")
    finally:
        sim.terminate()
        sim.wait(10)
    assert result.returncode == EXIT_REFUSED
    assert "garbage_ndef" in result.stdout and "Traceback" not in result.stderr


def test_tag_read_without_tag_times_out_clearly():
    port = free_udp_port()
    result = run("tag", "read", "--reader", f"udp:127.0.0.1:{port}", "--timeout", "1")
    assert result.returncode == EXIT_REFUSED and "no tag within 1 s" in result.stderr


def test_sim_rejects_a_bad_uid():
    result = run("sim", "tag", "--uid", "xyz", "--seconds", "1")
    assert result.returncode == 2 and "hex" in result.stderr
