"""Tap latency with NTAG 424 DNA SUN verification against today's NTAG215 path, same run.

Run ``.venv/bin/python benchmarks/sun_tap.py [--taps N] [--json]``. It prints figures for
both paths, measured in one run and interleaved tap by tap (so machine noise falls on
both alike); it never asserts on time.

Both paths go through the real stack of benchmarks/tap_latency.py: nfcpy's ``udp``
driver against :class:`~drivers.sim.udp_tag.UdpTagServer`, the real ``NfcpyReader``, the
real ``Registrar`` on a real SQLite store (``synchronous=FULL``), one arrival per tap.

* **NTAG215 (today's strongest path)**: tag policy ``signature``; nfcpy reads the
  originality signature (READ_SIG) and the NDEF URL over Type 2 READs; the registrar
  verifies the ECDSA signature (pure-Python secp128r1) before the transaction.
* **NTAG 424 DNA SUN**: tags provisioned here with per-tag keys (AN10922 from one
  master key), served as ISO-DEP Type 4 tags; nfcpy selects the NDEF application and
  reads the SDM URL (the chip mirrors a fresh counter and MAC); the registrar decrypts
  the PICC data, checks the CMAC and, in the transaction, the counter.

Segments as in tap_latency: on-connect -> Tap built (nfcpy's reads), Tap built ->
durable (``Registrar.handle``), on-connect -> durable.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import tempfile
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import Spread
from tap_latency import (
    MIN_CLIENTS,
    REPEAT_WINDOW_S,
    STAFF_REF,
    TAG_URI,
    TapRun,
    close_lanes,
    drive,
    open_lanes,
    reference_data,
    tag_uid,
    tally,
)

from agent.clock import SystemClock
from agent.store import Store
from agent.visits import Registrar, Settings
from drivers.nfc.authenticity import GENUINE_NXP
from drivers.nfc.provision import provision_ntag424
from drivers.sim.ntag424 import Ntag424Sim, Ntag424Tag
from drivers.sim.tags import SIM_PUBLIC_KEY_HEX, SimTag
from drivers.sim.udp_tag import build_tag
from routine import sun
from routine.sun import TagPolicy
from sync.protocol import SunTagKeys

log = logging.getLogger("benchmarks.sun_tap")

DEFAULT_TAPS = 200  # per path
DEFAULT_WARMUP = 10
DEFAULT_READERS = 3
MASTER = bytes(range(16))
URL_BASE = "https://nyckelfri.example/t"
SEGMENTS = {
    "read": "on-connect -> Tap built (nfcpy reads)",
    "handle": "Tap built -> durable (Registrar.handle)",
    "durable": "on-connect -> durable",
}


def provisioned(uid: str) -> Ntag424Tag:
    """A simulated NTAG 424 DNA provisioned as `nyckelfri tag provision` does it."""
    chip = Ntag424Sim(bytes.fromhex(uid))
    keys = sun.tag_key_set(MASTER, bytes.fromhex(uid))
    provision_ntag424(chip.process_apdu, bytes.fromhex(uid), keys, [bytes(16)] * 5, URL_BASE)
    return Ntag424Tag(chip)


def build_tags(count: int) -> tuple[list[SimTag], set[str]]:
    """Alternating NTAG215 / NTAG 424 tags, each at its own client; the SUN tags' UIDs."""
    tags: list[SimTag] = []
    sun_uids = set()
    for i in range(count):
        uid = tag_uid(i)
        if i % 2:
            tags.append(provisioned(uid))
            sun_uids.add(uid)
        else:
            tags.append(build_tag(uid, "NTAG215", uri=TAG_URI.format(ref=f"K-{i:05d}")))
    return tags, sun_uids


def open_registrar(workdir: Path, clients: int, sun_uids: set[str]) -> Registrar:
    store = Store.in_dir(workdir / "agent", device_id="bench-agent")
    store.import_reference(reference_data(clients), datetime.now(UTC).isoformat())
    keys = []
    for uid in sorted(sun_uids):
        key_set = sun.tag_key_set(MASTER, bytes.fromhex(uid))
        keys.append(SunTagKeys(uid=uid, key_version=1,
                               meta_read=key_set[sun.KEY_SDM_META_READ].hex(),
                               file_read=key_set[sun.KEY_SDM_FILE_READ].hex()))
    store.replace_tag_keys(str(TagPolicy.SIGNATURE), keys)
    trusted = (*GENUINE_NXP.items(), ("sim", SIM_PUBLIC_KEY_HEX))
    return Registrar(store, SystemClock(), Settings(
        repeat_window_s=REPEAT_WINDOW_S, personal_staff_ref=STAFF_REF,
        trusted_tag_keys=trusted))


def figures(run: TapRun, sun_uids: set[str]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for name, mine in (("ntag215_signature", False), ("ntag424_sun", True)):
        records = [r for r in run.records if (r.uid in sun_uids) is mine]
        done = [r for r in records if r.ok]
        spreads = {
            "read": Spread.of([r.tap_ns - r.connect_ns for r in done]),
            "handle": Spread.of([r.durable_ns - r.tap_ns for r in done]),
            "durable": Spread.of([r.durable_ns - r.connect_ns for r in done]),
        }
        paths[name] = {"taps": len(records), "registered": len(done),
                       "not_registered": len(records) - len(done),
                       **{k: v.as_dict() for k, v in spreads.items()}}
    return paths


def run(taps: int, warmup: int, readers: int, workdir: Path) -> dict[str, Any]:
    total = 2 * taps + warmup
    tags, sun_uids = build_tags(total)
    registrar = open_registrar(workdir, max(MIN_CLIENTS, total), sun_uids)
    lanes = open_lanes(readers, registrar, threading.Condition(), None)
    tap_run = TapRun(records=[], warmup=warmup, readers=readers)
    try:
        drive(lanes, tags, tap_run, None)
    finally:
        close_lanes(lanes)
    tally(tap_run)
    counters = registrar.store.sun_counters()
    registrar.store.close()
    return {
        "host": {"python": platform.python_version(), "machine": platform.machine()},
        "taps_per_path": taps, "warmup": warmup, "readers": readers,
        "outcomes": tap_run.outcomes, "missed": tap_run.missed,
        "sun_counters_recorded": len(counters),
        "paths": figures(tap_run, sun_uids),
    }


def table(data: dict[str, Any]) -> str:
    a, b = data["paths"]["ntag215_signature"], data["paths"]["ntag424_sun"]
    lines = [f"SUN tap benchmark: {data['taps_per_path']} taps per path, interleaved, "
             f"{data['readers']} udp reader(s), Python {data['host']['python']} "
             f"({data['host']['machine']})",
             f"registered: NTAG215 {a['registered']}/{a['taps']}, "
             f"NTAG 424 SUN {b['registered']}/{b['taps']}; missed {data['missed']}", "",
             f"{'ms (p50 / p90 / p99)':44} {'NTAG215 + signature':>24} {'NTAG 424 SUN':>24}"]
    for key, label in SEGMENTS.items():
        lines.append(f"{label:44} {_cell(a[key]):>24} {_cell(b[key]):>24}")
    ratio = b["durable"]["p50"] / a["durable"]["p50"] if a["durable"]["p50"] else float("nan")
    lines.append(f"\non-connect -> durable, p50: SUN path / today's path = {ratio:.2f}")
    return "\n".join(lines)


def _cell(spread: dict[str, Any]) -> str:
    return f"{spread['p50']:.2f} / {spread['p90']:.2f} / {spread['p99']:.2f}"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--taps", type=int, default=DEFAULT_TAPS, help="taps per path")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP)
    parser.add_argument("--readers", type=int, default=DEFAULT_READERS)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("-v", "--verbose", action="store_true", help="progress on stderr")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("nfc").setLevel(logging.CRITICAL)
    # every tap is at another client, so each closes the last visit with a warning
    logging.getLogger("agent.visits").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="nyckelfri-sun-bench-") as tmp:
        data = run(args.taps, args.warmup, args.readers, Path(tmp))
    print(json.dumps(data, indent=2) if args.json else table(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
