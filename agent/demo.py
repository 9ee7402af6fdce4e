"""``nyckelfri demo``: the main job on the embedded default, end to end.

A SQLite store in a temporary folder, the agent's real service with nfcpy's
real ``udp`` reader driver, and simulated NTAG215 tags presented one after the
other as a staff member would tap them at a client's door.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from agent.config import AgentConfig
from agent.service import AgentService
from agent.visits import Decision
from drivers.sim.tags import Ntag21x, SimTag
from drivers.sim.udp_tag import UdpTagServer, build_tag

# The demo taps faster than a person would, so it shortens the repeat window.
DEMO_REPEAT_WINDOW_S = 1.0
# How long a simulated tag stays on the reader: long enough for nfcpy to poll,
# select and read it (a few tens of ms on loopback) with a wide margin.
TAP_HOLD_S = 0.6
# A tap's verdict normally arrives within ~0.2 s; give up waiting after this.
TAP_WAIT_S = 10.0

REFERENCE = {
    "clients": [
        {"ref": "K-1042", "display_name": "Brukare A", "lock_status": "pending"},
        {"ref": "K-2001", "display_name": "Brukare B", "lock_status": "installed"},
    ],
    "tags": [
        {"uid": "04A1B2C3D4E5F6", "client_ref": "K-1042"},
        {"uid": "04B2C3D4E5F607", "client_ref": "K-2001"},
    ],
    "staff": [{"badge_uid": "040A0B0C0D0E0F", "staff_ref": "P-17", "display_name": "Anna"}],
}

FORGED = "forged"  # marks a cloned tag in the script below

SCRIPT = (
    ("Anna taps her staff badge", "040A0B0C0D0E0F", None),
    ("Anna taps the tag at K-1042's door: arrival", "04A1B2C3D4E5F6",
     "https://nyckelfri.example/t/K-1042"),
    ("She taps again by mistake: ignored", "04A1B2C3D4E5F6", "https://nyckelfri.example/t/K-1042"),
    ("An unknown tag", "04DEADBEEF0001", None),
    ("K-2001's tag, whose lock is installed", "04B2C3D4E5F607", None),
    ("A copy of K-1042's tag (same UID, no valid signature)", "04A1B2C3D4E5F6", FORGED),
    ("Anna leaves K-1042: departure", "04A1B2C3D4E5F6", "https://nyckelfri.example/t/K-1042"),
)


def _more_than(items: list[Decision], count: int) -> Callable[[], bool]:
    return lambda: len(items) > count


def run_demo(out: Callable[[str], None], data_dir: Path | None = None) -> list[Decision]:
    """Run the scripted taps through a real agent service; returns its decisions."""
    with tempfile.TemporaryDirectory(prefix="nyckelfri-demo-") as tmp:
        folder = data_dir or Path(tmp)
        decisions: list[Decision] = []
        arrived = threading.Condition()

        def emit(decision: Decision) -> None:
            with arrived:
                decisions.append(decision)
                arrived.notify_all()

        with UdpTagServer() as field:
            config = replace(AgentConfig(), data_dir=folder, device_id="demo-agent",
                             readers=(field.path,), repeat_window_s=DEMO_REPEAT_WINDOW_S,
                             feedback=False, trust_sim_tags=True, require_genuine_tags=True)
            service = AgentService(config, emit)
            service.store.import_reference(REFERENCE, datetime.now(UTC).isoformat())
            out(f"store: {service.store.path}\nreader: {field.path} (nfcpy udp driver)\n")
            service.build_readers([field.path])
            service.open_readers()
            stop = threading.Event()
            runner = threading.Thread(target=service.run_until, args=(stop,), daemon=True)
            runner.start()
            try:
                for i, (what, uid, uri) in enumerate(SCRIPT):
                    if i == len(SCRIPT) - 1:
                        time.sleep(DEMO_REPEAT_WINDOW_S)  # a visit lasts longer than the window
                    out(f"- {what}")
                    tag: SimTag = (Ntag21x(bytes.fromhex(uid), "NTAG215", signature=bytes(32))
                                   if uri == FORGED else build_tag(uid, "NTAG215", uri=uri))
                    field.present(tag, TAP_HOLD_S)
                    with arrived:
                        if not arrived.wait_for(_more_than(decisions, i), TAP_WAIT_S):
                            raise RuntimeError(f"no verdict for tap {uid} within {TAP_WAIT_S} s")
                    d = decisions[-1]
                    out(f"    {d.feedback.upper()}: {d.message}")
                    time.sleep(TAP_HOLD_S)  # let the tag leave the field
                    field.remove()
            finally:
                stop.set()
                runner.join(10)
        from agent.store import Store

        with Store.in_dir(folder) as store:
            out("\nvisits in the agent's store:")
            for v in store.visits():
                out(f"  {v.client_ref} by {v.staff_ref}: {v.arrived_at[11:19]} -> "
                    f"{(v.departed_at or '-')[11:19]} ({v.status})")
            counts = store.outbox_counts()
            out(f"outbox: {counts['pending']} events waiting for sync")
        return decisions
