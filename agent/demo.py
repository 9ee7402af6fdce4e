"""``nyckelfri demo``: the main job on the embedded default, end to end.

A centre on SQLite in a temporary folder, served over real HTTP on loopback; an
agent enrolled with it that pulls its reference data, then registers visits
offline through its real service and nfcpy's real ``udp`` reader driver as
simulated NTAG215 tags are tapped; then it syncs, and the demo prints what the
centre holds. This is the one module that composes both sides.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from agent.config import AgentConfig
from agent.service import AgentService
from agent.store import Store
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

DEVICE = "demo-agent"

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


def run_demo(out: Callable[[str], None]) -> list[Decision]:
    """Centre and agent end to end on SQLite and simulated tags; returns the decisions."""
    from central.api import create_app
    from central.server import run_in_thread
    from central.store import CentralStore

    with tempfile.TemporaryDirectory(prefix="nyckelfri-demo-") as tmp:
        folder = Path(tmp)
        centre = CentralStore.open(str(folder / "centre.db"))
        try:
            token = centre.add_device(DEVICE)
            centre.import_reference(REFERENCE)
            with run_in_thread(create_app(centre)) as (_server, _thread, url):
                out(f"centre: {url}, SQLite {folder / 'centre.db'}; agent {DEVICE} enrolled")
                config = replace(AgentConfig(), data_dir=folder / "agent", device_id=DEVICE,
                                 repeat_window_s=DEMO_REPEAT_WINDOW_S, feedback=False,
                                 trust_sim_tags=True, require_genuine_tags=True)
                online = replace(config, centre_url=url, token=token)
                report = _sync(online, out, "reference data from the centre")
                out(f"  {report.reference_items} reference items (clients, tags, badges)\n")
                decisions = _tap_offline(config, out)
                report = _sync(online, out, "back online")
                push = report.push
                out(f"  pushed {push.sent}, stored {push.stored} at the centre, clock "
                    f"offset {report.offset_s:+.3f} s\n")
            _print_centre(centre, out)
        finally:
            centre.close()
        return decisions


def _sync(config: AgentConfig, out: Callable[[str], None], why: str) -> Any:
    from agent.clock import SystemClock
    from agent.service import build_sync_client

    out(f"sync ({why}):")
    with (Store.in_dir(config.data_dir, device_id=config.device_id) as store,
          build_sync_client(config, store, SystemClock()) as client):
        return client.sync_once()


def _tap_offline(config: AgentConfig, out: Callable[[str], None]) -> list[Decision]:
    decisions: list[Decision] = []
    arrived = threading.Condition()

    def emit(decision: Decision) -> None:
        with arrived:
            decisions.append(decision)
            arrived.notify_all()

    with UdpTagServer() as field:
        service = AgentService(replace(config, readers=(field.path,)), emit)
        out(f"taps, offline (no centre configured), reader {field.path} (nfcpy udp driver):")
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
    out("")
    return decisions


def _print_centre(centre: Any, out: Callable[[str], None]) -> None:
    out("what the centre holds:")
    for v in centre.visits():
        arrived = v.arrived_at.astimezone().strftime("%H:%M:%S") if v.arrived_at else "-"
        departed = v.departed_at.astimezone().strftime("%H:%M:%S") if v.departed_at else "-"
        out(f"  visit {v.client_ref} by {v.staff_ref}: {arrived} -> {departed} ({v.status}; "
            f"time {v.arrived_quality}; from {v.device})")
    kinds: dict[str, int] = {}
    for e in centre.events(limit=100):
        kinds[e["kind"]] = kinds.get(e["kind"], 0) + 1
    out(f"  {centre.event_count()} events: "
        + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))
