"""Scan-to-verdict time of ``LockDriver.verify`` over the simulated air, against bare bumble.

Run ``.venv/bin/python benchmarks/lock_verify.py [--runs N] [--json]``. It prints
figures and a baseline measured in the same run; it never asserts on time.

Each verification is the production path: the real ``LockDriver.verify`` (scan for
the device tag, RSSI window, ``establish_connection`` with a fresh
``BleakClientWithServiceCache``, five GATT reads, challenge write, response by
notification, disconnect) through real bleak and bleak-retry-connector, on the
bumble backend of ``drivers.sim.bleak_bumble`` and a simulated lock
(``drivers.sim.ble_lock``) on one ``LocalLink``. Instrumented by injection only: the
driver is handed backend classes (``backend=``, the seam it has for this) that
subclass the bumble backend and stamp ``perf_counter_ns`` as bleak calls into them:

* **scan start**: ``verify`` called -> the backend scanner's ``start`` returned;
* **first advert**: -> the scanner heard the lock's first advertisement;
* **RSSI window**: -> the scanner's ``stop`` returned (the driver keeps listening
  ``--rssi-window`` s after the first advertisement: a fixed wait, production 1 s);
* **connect**: -> the first GATT read reached the backend (bleak-retry-connector,
  a new ``BleakClient``, the link, service discovery); its backend part, bumble's
  connect and discovery, is shown on its own line;
* **GATT reads**: serial, firmware, battery, bound client, binding state;
* **challenge -> notified**: subscribe, write the challenge, the response notified;
* **disconnect**: response notified -> the backend's ``disconnect`` returned;
* **verdict**: -> ``verify`` returned its ``Verification``.

Baseline, interleaved with the driver's runs on the same air and central: a bare
bumble central doing the same operations with no bleak and no driver: scan until
the lock's first advertisement and on for the RSSI window, connect, discover services,
characteristics and
descriptors (as the backend does), the same five reads, subscribe, write the
challenge, await the notification, disconnect and wait for the link to close.

Where the CPU goes: a separate run of ``--profile-runs`` verifications under
cProfile with a CPU clock (``time.process_time``: the event loop's idle waits do
not count), self time summed by the package of each function's file. A C function's
self time goes to the packages of its callers, in proportion.

The emulated link has no radio timing: a real connection event comes every 7.5-50 ms
(the connection interval) and every ATT request/response takes at least one, so on
hardware the link, not Python, dominates the GATT phases.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import logging
import os
import platform
import pstats
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from typing import Any, ClassVar

from _common import Spread
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import NotifyCallback
from bumble import core, hci
from bumble.device import Advertisement, Connection, Device, Peer

from drivers.ble import profile
from drivers.ble.errors import LockError
from drivers.ble.lock import LockDriver, Verification
from drivers.sim.ble_lock import LockConfig, SimLock, start_lock
from drivers.sim.bleak_bumble import (
    BumbleCentral,
    BumbleClient,
    BumbleScanner,
    SimulatedAir,
    address_str,
)

log = logging.getLogger("benchmarks.lock_verify")

DEFAULT_RUNS = 100
# Verifications before the measured ones: imports, first connection, caches.
DEFAULT_WARMUP = 5
DEFAULT_PROFILE_RUNS = 20
# The driver's own default (drivers.ble.lock.RSSI_WINDOW_S); smaller makes runs faster
# and changes only the RSSI-window phase.
DEFAULT_RSSI_WINDOW_S = 1.0
SERIAL = "NF-BENCH-0001"
CLIENT = "K-4711"
SECRET = bytes(range(16))
# One bare round trip: the emulated link answers in microseconds; this is a hang.
BARE_TIMEOUT_S = 10.0
PROFILE_LINES = 20
NS_PER_MS = 1e6

PHASES = ("scan start", "first advert", "RSSI window + scan stop", "connect",
          "GATT reads (5)", "challenge -> notified", "disconnect", "verdict")
CONNECT_BACKEND = "  of which backend connect + discovery"
ACTIVE = "total without the RSSI window"


# --- instrumentation through the driver's backend= seam --------------------------------


@dataclass
class Stamps:
    """perf_counter_ns of one verification's moments, 0 where it did not come."""

    called: int = 0
    scan_started: int = 0
    advert: int = 0
    scan_stopped: int = 0
    connect_in: int = 0
    connect_out: int = 0
    first_read: int = 0
    subscribe: int = 0
    notified: int = 0
    disconnected: int = 0
    returned: int = 0
    cpu_ns: int = 0  # process CPU time over the verification (lock and link included)

    def phases(self) -> dict[str, int]:
        moments = (self.called, self.scan_started, self.advert, self.scan_stopped,
                   self.first_read, self.subscribe, self.notified, self.disconnected,
                   self.returned)
        if not all(moments):
            return {}
        out = {name: b - a for name, a, b in zip(PHASES, moments, moments[1:], strict=False)}
        out[CONNECT_BACKEND] = self.connect_out - self.connect_in
        out["total"] = self.returned - self.called
        out[ACTIVE] = out["total"] - out["RSSI window + scan stop"]
        return out


class Probe:
    """Where the timed backend classes stamp the verification in progress."""

    def __init__(self) -> None:
        self.current = Stamps()


class AirCentral:
    """The air's central, for backend classes of our own (as the air's backend does)."""

    def __init__(self, air: SimulatedAir) -> None:
        self._air = air

    async def ready(self) -> BumbleCentral:
        return await self._air.central()


class TimedScanner(BumbleScanner):
    """The bumble scanner backend, stamping start, first advertisement and stop."""

    probe: ClassVar[Probe]

    async def start(self) -> None:
        await super().start()
        self.probe.current.scan_started = time.perf_counter_ns()

    def _on_advertisement(self, adv: Advertisement) -> None:
        stamps = self.probe.current
        if not stamps.advert:
            stamps.advert = time.perf_counter_ns()
        super()._on_advertisement(adv)

    async def stop(self) -> None:
        await super().stop()
        self.probe.current.scan_stopped = time.perf_counter_ns()


class TimedClient(BumbleClient):
    """The bumble client backend, stamping connect, reads, notification, disconnect."""

    probe: ClassVar[Probe]

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        self.probe.current.connect_in = time.perf_counter_ns()
        await super().connect(pair, **kwargs)
        self.probe.current.connect_out = time.perf_counter_ns()

    async def read_gatt_char(self, characteristic: BleakGATTCharacteristic, *,
                             use_cached: bool = False, **kwargs: Any) -> bytearray:
        stamps = self.probe.current
        if not stamps.first_read:
            stamps.first_read = time.perf_counter_ns()
        return await super().read_gatt_char(characteristic, use_cached=use_cached, **kwargs)

    async def start_notify(self, characteristic: BleakGATTCharacteristic,
                           callback: NotifyCallback, **kwargs: Any) -> None:
        stamps = self.probe.current
        stamps.subscribe = time.perf_counter_ns()

        def stamped(data: bytearray) -> None:
            if not stamps.notified:
                stamps.notified = time.perf_counter_ns()
            callback(data)

        await super().start_notify(characteristic, stamped, **kwargs)

    async def disconnect(self) -> None:
        await super().disconnect()
        self.probe.current.disconnected = time.perf_counter_ns()


class TimedBackend:
    """What ``LockDriver(backend=...)`` takes: the two timed classes."""

    scanner: ClassVar[type[TimedScanner]] = TimedScanner
    client: ClassVar[type[TimedClient]] = TimedClient


def timed_backend(air: SimulatedAir, probe: Probe) -> type[TimedBackend]:
    central = AirCentral(air)
    TimedScanner.central, TimedClient.central = central, central
    TimedScanner.probe, TimedClient.probe = probe, probe
    return TimedBackend


# --- the driver's verifications ---------------------------------------------------------


@dataclass
class Outcomes:
    ok: int = 0
    proof_ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def add_error(self, exc: BaseException) -> None:
        key = type(exc).__name__
        self.errors[key] = self.errors.get(key, 0) + 1


def proof_holds(result: Verification, nonce: bytes, config: LockConfig) -> bool:
    """The centre's check (verify_response with the lock's secret) on the recorded proof."""
    if result.response_hex is None or result.binding is None:
        return False
    return profile.verify_response(config.secret, nonce, config.serial, result.binding,
                                   config.bound_client, bytes.fromhex(result.response_hex))


async def one_verification(driver: LockDriver, probe: Probe, config: LockConfig,
                           outcomes: Outcomes) -> Stamps:
    nonce = os.urandom(profile.NONCE_LEN)
    stamps = probe.current = Stamps()
    cpu = time.process_time_ns()
    stamps.called = time.perf_counter_ns()
    try:
        result = await driver.verify(config.serial, CLIENT, nonce=nonce)
    except LockError as exc:
        log.warning("verification failed: %s", exc)
        outcomes.add_error(exc)
        return Stamps()
    stamps.returned = time.perf_counter_ns()
    stamps.cpu_ns = time.process_time_ns() - cpu
    outcomes.ok += result.ok
    outcomes.proof_ok += proof_holds(result, nonce, config)
    return stamps


# --- baseline: a bare bumble central -----------------------------------------------------


async def bare_round_trip(central: Device, lock: SimLock, rssi_window: float) -> dict[str, int]:
    """The driver's GATT operations straight on bumble; phase durations in ns."""
    config = lock.config
    address = config.device_address
    loop = asyncio.get_running_loop()
    heard: asyncio.Future[Advertisement] = loop.create_future()

    def on_advertisement(adv: Advertisement) -> None:
        if not heard.done() and address_str(adv.address) == address:
            heard.set_result(adv)

    t0 = time.perf_counter_ns()
    cpu = time.process_time_ns()
    central.on(Device.EVENT_ADVERTISEMENT, on_advertisement)
    await central.start_scanning(active=True, filter_duplicates=False)
    t1 = time.perf_counter_ns()
    adv = await asyncio.wait_for(heard, BARE_TIMEOUT_S)
    t2 = time.perf_counter_ns()
    # Listen as long as the driver does: bumble's emulated connect waits for the lock's
    # next advertising event, so the advertising phase must match for connect to compare.
    await asyncio.sleep(rssi_window)
    central.remove_listener(Device.EVENT_ADVERTISEMENT, on_advertisement)
    await central.stop_scanning()
    t3 = time.perf_counter_ns()

    connection = await central.connect(adv.address, transport=core.PhysicalTransport.LE,
                                       timeout=BARE_TIMEOUT_S)
    peer = Peer(connection)
    for service in await peer.discover_services():
        await service.discover_characteristics()
        for char in service.characteristics:
            await char.discover_descriptors()
    t4 = time.perf_counter_ns()

    def char_of(uuid: str) -> Any:
        return peer.get_characteristics_by_uuid(core.UUID(uuid))[0]

    serial = profile.decode_serial(await char_of(profile.SERIAL_NUMBER_CHAR).read_value())
    profile.decode_firmware(await char_of(profile.FIRMWARE_REVISION_CHAR).read_value())
    profile.decode_battery(await char_of(profile.BATTERY_LEVEL_CHAR).read_value())
    bound = profile.decode_bound_client(await char_of(profile.BOUND_CLIENT_CHAR).read_value())
    binding = profile.decode_binding(await char_of(profile.BINDING_STATE_CHAR).read_value())
    t5 = time.perf_counter_ns()

    nonce = os.urandom(profile.NONCE_LEN)
    notified: asyncio.Future[bytes] = loop.create_future()

    def on_response(value: bytes) -> None:
        if not notified.done():
            notified.set_result(bytes(value))

    await char_of(profile.RESPONSE_CHAR).subscribe(on_response)
    await char_of(profile.CHALLENGE_CHAR).write_value(profile.encode_challenge(nonce),
                                                      with_response=True)
    response = await asyncio.wait_for(notified, BARE_TIMEOUT_S)
    t6 = time.perf_counter_ns()

    gone: asyncio.Future[int] = loop.create_future()

    def closed(reason: int) -> None:
        if not gone.done():
            gone.set_result(reason)

    connection.once(Connection.EVENT_DISCONNECTION, closed)
    await connection.disconnect()
    await asyncio.wait_for(gone, BARE_TIMEOUT_S)
    t7 = time.perf_counter_ns()
    cpu = time.process_time_ns() - cpu

    if serial != config.serial or bound != config.bound_client or not profile.verify_response(
            config.secret, nonce, config.serial, binding, bound, response):
        raise RuntimeError("the bare round trip read something other than the lock holds")
    return {"scan start": t1 - t0, "first advert": t2 - t1, "RSSI window + scan stop": t3 - t2,
            "connect": t4 - t3, "GATT reads (5)": t5 - t4, "challenge -> notified": t6 - t5,
            "disconnect": t7 - t6, "total": t7 - t0, ACTIVE: t7 - t0 - (t3 - t2),
            "cpu": cpu}


# --- the run --------------------------------------------------------------------------------


@dataclass
class Run:
    ours: list[Stamps] = field(default_factory=list)
    bare: list[dict[str, int]] = field(default_factory=list)
    outcomes: Outcomes = field(default_factory=Outcomes)
    bare_failures: int = 0
    wall_s: float = 0.0
    profile_runs: int = 0
    profiler: cProfile.Profile | None = None


async def measure(args: argparse.Namespace) -> Run:
    run = Run()
    probe = Probe()
    config = LockConfig(SERIAL, SECRET, bound_client=CLIENT)
    async with SimulatedAir() as air:
        lock = await start_lock(air, config)
        driver = LockDriver(timed_backend(air, probe), rssi_window=args.rssi_window)
        central = (await air.central()).device
        started = time.perf_counter()
        for i in range(args.warmup + args.runs):
            # Interleaved: a slow spell of the machine hits both alike.
            stamps = await one_verification(driver, probe, config, run.outcomes)
            try:
                bare = await bare_round_trip(central, lock, args.rssi_window)
            except (core.BaseBumbleError, hci.HCI_Error, TimeoutError, RuntimeError) as exc:
                log.warning("bare round trip failed: %r", exc)
                run.bare_failures += 1
                bare = {}
            if i + 1 == args.warmup:
                run.outcomes = Outcomes()  # count the measured ones only
            if i >= args.warmup:
                run.ours.append(stamps)
                if bare:
                    run.bare.append(bare)
            if (i + 1) % 20 == 0:
                log.info("%d/%d", i + 1, args.warmup + args.runs)
        run.wall_s = time.perf_counter() - started
        if args.profile_runs:
            run.profiler = cProfile.Profile(time.process_time)
            ignored = Outcomes()
            for _ in range(args.profile_runs):
                run.profiler.enable()
                await one_verification(driver, probe, config, ignored)
                run.profiler.disable()
            run.profile_runs = args.profile_runs
        await lock.stop()
    return run


# --- where the CPU goes -------------------------------------------------------------------------


def category(filename: str) -> str:
    path = filename.replace("\\", "/")
    if "/drivers/ble/" in path:
        return "ours: drivers/ble (LockDriver, profile)"
    if path.endswith("drivers/sim/bleak_bumble.py"):
        return "bleak backend on bumble (sim; BlueZ's place)"
    if path.endswith("drivers/sim/ble_lock.py"):
        return "simulated lock (not on an agent)"
    if "/benchmarks/" in path:
        return "benchmark probes"
    if "/site-packages/" in path:
        package = path.split("/site-packages/", 1)[1].split("/", 1)[0]
        if package == "bumble":
            if path.endswith(("bumble/controller.py", "bumble/link.py")):
                return "bumble emulated controllers + link (the radio)"
            return "bumble hosts (central and lock)"
        return {"bleak": "bleak", "bleak_retry_connector": "bleak-retry-connector",
                "cryptography": "cryptography (the lock's CMAC)"}.get(package,
                                                                      f"other: {package}")
    if "/asyncio/" in path:
        return "asyncio"
    if "/logging/" in path:
        return "logging"
    return "other stdlib"


def cpu_shares(profiler: cProfile.Profile) -> tuple[dict[str, float], float]:
    """Self CPU seconds per category, C functions charged to their callers."""
    raw: dict[Any, Any] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    shares: dict[str, float] = {}

    def charge(key: Any, seconds: float, depth: int = 0) -> None:
        filename = key[0]
        if filename != "~" or depth > 5:
            name = category(filename) if filename != "~" else "other stdlib"
            shares[name] = shares.get(name, 0.0) + seconds
            return
        callers = raw[key][4] if key in raw else {}
        total = sum(c[2] for c in callers.values())
        if not callers or total <= 0:
            shares["C, caller unknown"] = shares.get("C, caller unknown", 0.0) + seconds
            return
        for caller, (_, _, tt, _) in callers.items():
            charge(caller, seconds * tt / total, depth + 1)

    for key, (_, _, tottime, _, _) in raw.items():
        charge(key, tottime)
    return dict(sorted(shares.items(), key=lambda kv: -kv[1])), sum(shares.values())


INCLUSIVE = (
    ("drivers/ble/lock.py", "verify", "LockDriver.verify"),
    ("drivers/ble/lock.py", "find", "  LockDriver.find (scan)"),
    ("drivers/ble/lock.py", "_connect", "  LockDriver._connect"),
    ("bleak_retry_connector/__init__.py", "establish_connection", "    establish_connection"),
    ("drivers/sim/bleak_bumble.py", "connect", "      backend connect + discovery"),
    ("bleak/__init__.py", "read_gatt_char", "  BleakClient.read_gatt_char (all)"),
    ("bleak/__init__.py", "start_notify", "  BleakClient.start_notify"),
    ("bleak/__init__.py", "write_gatt_char", "  BleakClient.write_gatt_char"),
    ("bleak/__init__.py", "disconnect", "  BleakClient.disconnect"),
)


def inclusive_ms(profiler: cProfile.Profile, runs: int) -> dict[str, float]:
    """Cumulative CPU ms per verification of the driver's steps (callees included)."""
    raw: dict[Any, Any] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    out: dict[str, float] = {}
    for path_end, name, label in INCLUSIVE:
        keys = [k for k in raw if k[0].replace("\\", "/").endswith(path_end) and k[2] == name]
        if keys:
            out[label] = 1000 * max(raw[k][3] for k in keys) / runs
    return out


def top_functions(profiler: cProfile.Profile) -> str:
    import io

    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(PROFILE_LINES)
    return out.getvalue()


# --- report ---------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "bleak": version("bleak"),
        "bleak_retry_connector": version("bleak-retry-connector"),
        "bumble": version("bumble"),
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
    }


def report(args: argparse.Namespace, host: dict[str, Any], run: Run) -> dict[str, Any]:
    ours_phases = [p for p in (s.phases() for s in run.ours) if p]
    names = [*PHASES[:4], CONNECT_BACKEND, *PHASES[4:], "total", ACTIVE]
    ours = {n: Spread.of([p[n] for p in ours_phases]).as_dict() for n in names}
    bare_names = [n for n in names if run.bare and n in run.bare[0]]
    bare = {n: Spread.of([b[n] for b in run.bare]).as_dict() for n in bare_names}
    data: dict[str, Any] = {
        "machine": host,
        "settings": {"runs": args.runs, "warmup": args.warmup,
                     "rssi_window_s": args.rssi_window, "profile_runs": run.profile_runs,
                     "advertising_interval_ms": 100.0},
        "verifications": {"measured": len(ours_phases), "ok": run.outcomes.ok,
                          "proof_ok": run.outcomes.proof_ok, "errors": run.outcomes.errors,
                          "wall_s_with_baseline": round(run.wall_s, 2)},
        "ours_ms": ours,
        "bare_bumble_ms": bare,
        "bare_failures": run.bare_failures,
        "cpu_ms_per_run": {
            "ours": Spread.of([s.cpu_ns for s in run.ours if s.cpu_ns]).as_dict(),
            "bare": Spread.of([b["cpu"] for b in run.bare]).as_dict(),
        },
        "overhead_ms": {n: {"p50": round(ours[n]["p50"] - bare[n]["p50"], 3),
                            "p99": round(ours[n]["p99"] - bare[n]["p99"], 3)}
                        for n in bare},
    }
    if run.profiler is not None:
        shares, total = cpu_shares(run.profiler)
        data["cpu_profile"] = {
            "runs": run.profile_runs,
            "clock": "time.process_time under cProfile (inflated by profiling)",
            "self_ms_per_run": {k: round(1000 * v / run.profile_runs, 3)
                                for k, v in shares.items()},
            "self_share": {k: round(v / total, 4) for k, v in shares.items()},
            "inclusive_ms_per_run": {k: round(v, 3)
                                     for k, v in inclusive_ms(run.profiler,
                                                              run.profile_runs).items()},
        }
    return data


def spread_row(label: str, s: dict[str, Any], width: int = 40) -> str:
    return (f"  {label:<{width}}{s['p50']:>9.2f}{s['p90']:>9.2f}{s['p99']:>9.2f}"
            f"{s['max']:>9.2f}")


def table(data: dict[str, Any]) -> str:
    host, settings, v = data["machine"], data["settings"], data["verifications"]
    header = f"  {'':<40}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}"
    lines = [
        f"machine: {host['nproc']} CPUs ({host['usable_cpus']} usable), Python "
        f"{host['python']}, bleak {host['bleak']}, bleak-retry-connector "
        f"{host['bleak_retry_connector']}, bumble {host['bumble']}, {host['platform']}",
        f"load average (1 min) {host['loadavg_1m_at_start']} at start, "
        f"{host.get('loadavg_1m_at_end', '?')} at end",
        "",
        f"LockDriver.verify over the simulated air: {v['measured']} measured "
        f"(after {settings['warmup']} warm-up), {v['ok']} ok, {v['proof_ok']} proofs "
        f"checked by verify_response, errors {v['errors'] or 'none'}; RSSI window "
        f"{settings['rssi_window_s']} s, lock advertising every "
        f"{settings['advertising_interval_ms']:.0f} ms",
        "",
        "ours: LockDriver -> bleak -> bleak-retry-connector -> bumble backend (ms)",
        header,
        *[spread_row(n, s) for n, s in data["ours_ms"].items()],
        "",
        f"baseline: bare bumble central, same operations and listening time, no bleak, "
        f"no driver (ms); "
        f"{data['bare_failures']} failed",
        header,
        *[spread_row(n, s) for n, s in data["bare_bumble_ms"].items()],
        "",
        "ours - baseline (ms)                          p50      p99",
        *[f"  {n:<40}{o['p50']:>9.2f}{o['p99']:>9.2f}" for n, o in data["overhead_ms"].items()],
        "",
        "process CPU per run (ms; the simulated lock and link run in this process too)",
        header,
        spread_row("ours", data["cpu_ms_per_run"]["ours"]),
        spread_row("bare bumble", data["cpu_ms_per_run"]["bare"]),
    ]
    prof = data.get("cpu_profile")
    if prof:
        lines += ["", f"CPU by package over {prof['runs']} more verifications "
                      f"({prof['clock']}); self time, C functions charged to callers",
                  f"  {'':<52}{'ms/run':>9}{'share':>8}"]
        lines += [f"  {k:<52}{ms:>9.2f}{prof['self_share'][k]:>8.1%}"
                  for k, ms in prof["self_ms_per_run"].items()]
        lines += ["", "  inclusive CPU ms per verification (callees included)"]
        lines += [f"  {k:<52}{ms:>9.2f}" for k, ms in prof["inclusive_ms_per_run"].items()]
    lines += [
        "",
        "NOTE the emulated LocalLink has no radio timing. On hardware every ATT request/"
        "response",
        "waits for connection events (interval 7.5-50 ms), connecting takes one or more "
        "intervals",
        "and advertisements come every 100 ms-1 s: the link, not this CPU time, dominates "
        "there.",
    ]
    return "\n".join(lines)


# --- command line -------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS,
                        help=f"measured verifications (default {DEFAULT_RUNS})")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP,
                        help=f"unmeasured verifications first (default {DEFAULT_WARMUP})")
    parser.add_argument("--rssi-window", type=float, default=DEFAULT_RSSI_WINDOW_S,
                        help="the driver's RSSI window in s (default "
                             f"{DEFAULT_RSSI_WINDOW_S}, as in production)")
    parser.add_argument("--profile-runs", type=int, default=DEFAULT_PROFILE_RUNS,
                        help="verifications under cProfile after the measured ones "
                             f"(default {DEFAULT_PROFILE_RUNS}; 0: none)")
    parser.add_argument("--top", action="store_true",
                        help="also print the profile's top functions by self time")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("-v", "--verbose", action="store_true", help="progress on stderr")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.warmup < 0 or args.profile_runs < 0 or args.rssi_window < 0:
        parser.error("--runs must be at least 1; --warmup, --profile-runs and "
                     "--rssi-window 0 or more")
    return args


def setup_logging(verbose: bool) -> None:
    """WARNING for the stack (as the agent runs), bumble quiet; progress on stderr."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("bumble").setLevel(logging.ERROR)
    log.setLevel(logging.INFO if verbose else logging.WARNING)


def main(argv: Sequence[str] | None = None,
         runner: Callable[[Any], Run] = asyncio.run) -> int:
    args = parse_args(argv)
    setup_logging(args.verbose)
    host = machine()
    run = runner(measure(args))
    host["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    data = report(args, host, run)
    if args.json:
        print(json.dumps(data, indent=2, default=asdict))
    else:
        print(table(data))
        if args.top and run.profiler is not None:
            print("\n" + top_functions(run.profiler))
    return 0


if __name__ == "__main__":
    sys.exit(main())
