"""``nyckelfri demo``: the main job on the embedded default, end to end.

A centre on SQLite in a temporary folder, served over real HTTP on loopback; an
NTAG 424 DNA provisioned for one client through the centre (``nyckelfri tag
provision``'s code, over nfcpy's ``udp`` driver); an agent enrolled with it that
pulls its reference data and that tag's SUN keys, then registers visits offline
through its real service and reader driver as simulated tags are tapped (NTAG215
tags, and the NTAG 424 DNA whose replayed URL and UID copy are refused); then it
syncs, and the demo prints what the centre holds and the alert the copies raised.
This is the one module that composes both sides.
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
from drivers.sim.ntag424 import Ntag424Sim, Ntag424Tag
from drivers.sim.tags import Ntag21x, SimTag, Type4Tag, ndef_bytes, sign_uid
from drivers.sim.udp_tag import UdpTagServer, build_tag

# The demo taps faster than a person would, so it shortens the repeat window.
DEMO_REPEAT_WINDOW_S = 1.0
# How long a simulated tag stays on the reader: long enough for nfcpy to poll,
# select and read it (a few tens of ms on loopback) with a wide margin.
TAP_HOLD_S = 0.6
# A tap's verdict normally arrives within ~0.2 s; give up waiting after this.
TAP_WAIT_S = 10.0

DEVICE = "demo-agent"
PROVIDER = "demo-utforare"  # the home-care provider's coordinator, who issues tags
UNIT = "hemtjanst-demo"
SUN_CLIENT = "K-3003"
SUN_UID = "04C767F2066180"

REFERENCE = {
    "clients": [
        {"ref": "K-1042", "display_name": "Brukare A", "lock_status": "pending"},
        {"ref": "K-2001", "display_name": "Brukare B", "lock_status": "installed"},
        {"ref": SUN_CLIENT, "display_name": "Brukare C", "lock_status": "pending"},
    ],
    "tags": [
        {"uid": "04A1B2C3D4E5F6", "client_ref": "K-1042"},
        {"uid": "04B2C3D4E5F607", "client_ref": "K-2001"},
    ],
    "staff": [{"badge_uid": "040A0B0C0D0E0F", "staff_ref": "P-17", "display_name": "Anna"}],
}

FORGED = "forged"  # marks a cloned tag in the script below
SUN = "sun"  # the provisioned NTAG 424 DNA itself
SUN_REPLAY = "sun-replay"  # a tag replaying the URL the NTAG 424 DNA gave last
SUN_MAGIC = "sun-magic"  # a "magic" tag with its UID and a valid originality signature

SCRIPT = (
    ("Anna taps her staff badge", "040A0B0C0D0E0F", None),
    ("Anna taps the tag at K-1042's door: arrival", "04A1B2C3D4E5F6",
     "https://nyckelfri.example/t/K-1042"),
    ("She taps again by mistake: ignored", "04A1B2C3D4E5F6", "https://nyckelfri.example/t/K-1042"),
    ("An unknown tag", "04DEADBEEF0001", None),
    ("K-2001's tag, whose lock is installed", "04B2C3D4E5F607", None),
    ("A copy of K-1042's tag (same UID, no valid signature)", "04A1B2C3D4E5F6", FORGED),
    ("Anna leaves K-1042: departure", "04A1B2C3D4E5F6", "https://nyckelfri.example/t/K-1042"),
    (f"Anna taps {SUN_CLIENT}'s NTAG 424 DNA: arrival (a fresh SUN)", SUN_UID, SUN),
    ("A copy replaying the URL that tap gave (same UID)", SUN_UID, SUN_REPLAY),
    ("A magic tag with its UID and originality signature, no SUN", SUN_UID, SUN_MAGIC),
    (f"Anna leaves {SUN_CLIENT}: departure (the next SUN)", SUN_UID, SUN),
)
# Script steps after which a visit has lasted longer than the repeat window.
LATER = {6, 10}


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
            token, provider_token, routine = _set_up_centre(centre)
            with run_in_thread(create_app(centre, routine=routine)) as (_server, _thread, url):
                out(f"centre: {url}, SQLite {folder / 'centre.db'}; agent {DEVICE} enrolled")
                chip = _provision(url, provider_token, out)
                config = replace(AgentConfig(), data_dir=folder / "agent", device_id=DEVICE,
                                 repeat_window_s=DEMO_REPEAT_WINDOW_S, feedback=False,
                                 trust_sim_tags=True, require_genuine_tags=True)
                online = replace(config, centre_url=url, token=token)
                report = _sync(online, out, "reference data from the centre")
                out(f"  {report.reference_items} reference items (clients, tags, badges), "
                    f"SUN keys of {report.tag_keys} tag(s)\n")
                decisions = _tap_offline(config, chip, out)
                report = _sync(online, out, "back online")
                push = report.push
                out(f"  pushed {push.sent}, stored {push.stored} at the centre, clock "
                    f"offset {report.offset_s:+.3f} s\n")
            _print_centre(centre, routine, out)
        finally:
            centre.close()
        return decisions


def _set_up_centre(centre: Any) -> tuple[str, str, Any]:
    """The agent's and the provider's tokens, reference data, a tag stock and the SUN
    client's home care (a tag is issued for a running implementation)."""
    from datetime import date

    from central.cases.store import RoutineStore
    from central.cases.values import ImplementationKind, Principal

    routine = RoutineStore(centre)
    token = centre.add_device(DEVICE, "device", UNIT)
    provider_token = centre.add_device(PROVIDER, "provider", UNIT)
    centre.import_reference(REFERENCE)
    provider = Principal(PROVIDER, "provider", UNIT)
    routine.tags.add_stock(UNIT, 1, provider)
    routine.implementations.start(SUN_CLIENT, ImplementationKind.HOME_CARE, UNIT,
                                 date.today(), provider)
    return token, provider_token, routine


def _provision(url: str, provider_token: str, out: Callable[[str], None]) -> Ntag424Sim:
    """A factory-fresh NTAG 424 DNA provisioned for SUN_CLIENT, as `nyckelfri tag
    provision` does it; returns the chip (its keys and counter stay with it)."""
    from agent.provision import ProvisionCentre, provision_tag

    chip = Ntag424Sim(bytes.fromhex(SUN_UID))
    with UdpTagServer() as field, ProvisionCentre(url, provider_token) as centre:
        field.present(Ntag424Tag(chip))
        done = provision_tag(field.path, SUN_CLIENT, centre, timeout_s=TAP_WAIT_S)
    out(f"tag provision: NTAG 424 DNA {done.uid} for {done.client_ref}, key version "
        f"{done.key_version}, SUN read back with counter {done.counter}\n")
    return chip


def _sync(config: AgentConfig, out: Callable[[str], None], why: str) -> Any:
    from agent.clock import SystemClock
    from agent.service import build_sync_client

    out(f"sync ({why}):")
    with (Store.in_dir(config.data_dir, device_id=config.device_id) as store,
          build_sync_client(config, store, SystemClock()) as client):
        return client.sync_once()


def _tap_offline(config: AgentConfig, chip: Ntag424Sim,
                 out: Callable[[str], None]) -> list[Decision]:
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
            last_sun_url = ""
            for i, (what, uid, uri) in enumerate(SCRIPT):
                if i in LATER:
                    time.sleep(DEMO_REPEAT_WINDOW_S)  # a visit lasts longer than the window
                out(f"- {what}")
                tag = _script_tag(uid, uri, chip, last_sun_url)
                field.present(tag, TAP_HOLD_S)
                with arrived:
                    if not arrived.wait_for(_more_than(decisions, i), TAP_WAIT_S):
                        raise RuntimeError(f"no verdict for tap {uid} within {TAP_WAIT_S} s")
                d = decisions[-1]
                out(f"    {d.feedback.upper()}: {d.message}")
                if uri == SUN and d.event_id:
                    last_sun_url = _sun_url_of(config, d.event_id)
                time.sleep(TAP_HOLD_S)  # let the tag leave the field
                field.remove()
        finally:
            stop.set()
            runner.join(10)
    out("")
    return decisions


def _script_tag(uid: str, uri: str | None, chip: Ntag424Sim, last_sun_url: str) -> SimTag:
    raw = bytes.fromhex(uid)
    if uri == FORGED:
        return Ntag21x(raw, "NTAG215", signature=bytes(32))
    if uri == SUN:
        return Ntag424Tag(chip)
    if uri == SUN_REPLAY:
        return Type4Tag(raw, ndef_bytes(uri=last_sun_url))
    if uri == SUN_MAGIC:
        return Ntag21x(raw, "NTAG215", ndef_bytes(uri=f"https://nyckelfri.example/t/{uid}"),
                       signature=sign_uid(raw))
    return build_tag(uid, "NTAG215", uri=uri)


def _sun_url_of(config: AgentConfig, event_id: str) -> str:
    """The SUN URL the agent recorded with that tap (what a copier would have captured)."""
    with Store.in_dir(config.data_dir, device_id=config.device_id) as store:
        for event in store.pending_events(1000):
            if event.event_id == event_id:
                return str(event.payload["data"]["sun"]["url"])
    raise RuntimeError(f"tap event {event_id} not in the agent's outbox")


def _print_centre(centre: Any, routine: Any, out: Callable[[str], None]) -> None:
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
    from central.cases.values import Principal

    centre_admin = Principal("demo-admin", "admin", None)  # the centre reads its alerts
    for alert in routine.alerts.current(actor=centre_admin):
        if str(alert.kind) == "tag_copy_suspected":
            out(f"  ALERT {alert.kind}: {alert.detail}")
