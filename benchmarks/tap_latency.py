"""Tap latency of the field agent on nfcpy's real driver stack, against bare SQLite.

Run ``.venv/bin/python benchmarks/tap_latency.py [--taps N] [--json]``. It prints
figures and baselines measured in the same run; it never asserts on time.

Each simulated tap goes through the real stack: a real ``Store`` in a temporary
folder, the real ``Registrar`` on a personal device (every tap is at another
client's tag, so each is an arrival that also closes the previous visit as
"departure missing", the heaviest ordinary transaction) and the real
``NfcpyReader`` on nfcpy's ``udp`` driver, served by
:class:`~drivers.sim.udp_tag.UdpTagServer`. Instrumented by injection only:

* **on-connect**: ``NfcpyReader._on_connect`` first calls the injected
  ``boottime_ns`` clock; that call is the stamp;
* **Tap built**: the injected ``on_tap`` is entered (nfcpy has read the
  originality signature and the NDEF message over the udp driver);
* **durable**: the registrar's ``handle`` returned: its one WAL transaction with
  ``synchronous=FULL`` committed;
* **feedback**: the injected feedback sink's ``give`` was called.

Baselines: a bare ``sqlite3`` one-row transaction of the same size as our outbox
event plus visit row and the same durability, back to back and spaced like the
taps' commits (on a VM disk an fsync after some idle costs several times one that
follows another at once; the taps come ~65 ms apart, in the field minutes apart).
Memory and idle CPU come from a real ``python -m agent agent run`` process polling
an empty simulated field, beside interpreters that only sleep.

Pace: nfcpy's udp driver notices a removed tag only after ~0.3 s (a READ with a
0.1 s timeout and two retries), so one reader manages ~3 taps/s. The taps
therefore rotate over ``--readers`` readers (one worker thread and simulated
field each, as the agent runs several readers), presented evenly: a tag is put
down only after the previous tap's feedback was given and that tag taken away,
so measured taps never overlap; only the waiting for releases does.
``--readers 1`` gives the strict one-reader cycle.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import itertools
import json
import logging
import os
import platform
import pstats
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import psutil
from _common import MIB, ROOT, Spread, filesystem_of

from agent.clock import SystemClock
from agent.store import Store
from agent.visits import Decision, Outcome, Registrar, Settings
from drivers.nfc.base import Feedback, Tap
from drivers.nfc.reader import NfcpyReader
from drivers.sim.tags import SimTag
from drivers.sim.udp_tag import UdpTagServer, build_tag

log = logging.getLogger("benchmarks.tap_latency")

DEFAULT_TAPS = 1000
# Taps before the measured ones: imports, SQLite's statement cache and page cache.
DEFAULT_WARMUP = 20
DEFAULT_IDLE_S = 5.0
# The paced baseline waits between commits as long as the taps did (~80 ms), so it
# runs only this many rows by default: ~25 s, enough for p50 and p99.
DEFAULT_PACED_ROWS = 300
# nfcpy's udp driver takes ~0.3 s to notice a tag left; five readers in rotation
# present a tag every ~65 ms, still far enough apart that each commit finds the
# disk idle (fsync costs the same from ~40 ms of idle on; see the baseline note).
DEFAULT_READERS = 5
# Measured taps are spread evenly, a little slower than the readers could go, so
# every commit finds the disk as idle as the others (see the baseline's note).
SPACING_MARGIN = 1.05
# A verdict normally follows the tag within tens of ms; after this it is missed.
DECISION_TIMEOUT_S = 5.0
# nfcpy's udp driver notices a removed tag after ~0.4 s; give it ample margin.
RELEASE_TIMEOUT_S = 5.0
# `agent run` prints its start line after opening the readers (imports take ~1 s).
AGENT_START_TIMEOUT_S = 30.0
# Let the agent subprocess finish start-up work before the idle window opens.
IDLE_SETTLE_S = 1.0
# How long a floor interpreter (`python -c ...`) is kept alive to be measured.
FLOOR_LIFETIME_S = 60
FLOOR_START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
# Taps are seconds apart at most; a window this short never turns a tap at a
# new client into an "ignored" repeat, and keeps the debounce query in the path.
REPEAT_WINDOW_S = 0.001
STAFF_REF = "P-bench"
# Reference data of a large home-care area: more clients than taps, so every tap
# is at a tag not tapped before in the run.
MIN_CLIENTS = 2000
TAG_URI = "https://nyckelfri.example/t/{ref}"
PROFILE_LINES = 25


# --- instrumentation ------------------------------------------------------------------


@dataclass
class TapRecord:
    """perf_counter_ns stamps of one tap, 0 where the moment did not come."""

    presented_ns: int = 0
    connect_ns: int = 0
    tap_ns: int = 0
    durable_ns: int = 0
    feedback_ns: int = 0
    released_ns: int = 0
    uid: str = ""
    outcome: str = ""
    problem: str = ""

    @property
    def ok(self) -> bool:
        return (self.feedback_ns > 0 and self.durable_ns > 0 and not self.problem
                and self.outcome == Outcome.ARRIVAL)


class Probe:
    """Injected into one NfcpyReader: its clock, tap handler, feedback sink and release handler.

    All four are called in that reader's worker thread; the benchmark's main
    thread waits on :attr:`changed`.
    """

    def __init__(self, handle: Callable[[Tap], Decision], changed: threading.Condition,
                 profiler: cProfile.Profile | None = None) -> None:
        self._handle = handle
        self.changed = changed
        self.profiler = profiler
        self.records: list[TapRecord] = []
        self.releases = 0

    def boottime_ns(self) -> int:
        now = time.perf_counter_ns()  # first thing in _on_connect: the on-connect moment
        with self.changed:
            self.records.append(TapRecord(connect_ns=now))
            self.changed.notify_all()
        return time.clock_gettime_ns(time.CLOCK_BOOTTIME)

    def on_tap(self, tap: Tap) -> Feedback:
        built = time.perf_counter_ns()
        record = self.records[-1]
        record.tap_ns, record.uid = built, tap.uid
        record.problem = str(tap.problem or "")
        if self.profiler is not None:
            self.profiler.enable()
        try:
            decision = self._handle(tap)
        finally:
            if self.profiler is not None:
                self.profiler.disable()
        record.durable_ns = time.perf_counter_ns()
        record.outcome = str(decision.outcome)
        return decision.feedback

    def feedback_factory(self, device: Any) -> Probe:
        return self

    def give(self, feedback: Feedback, device: Any) -> None:
        now = time.perf_counter_ns()
        with self.changed:
            self.records[-1].feedback_ns = now
            self.changed.notify_all()

    def on_release(self, uid: str) -> None:
        now = time.perf_counter_ns()
        with self.changed:
            if self.records:
                self.records[-1].released_ns = now
            self.releases += 1
            self.changed.notify_all()


@dataclass
class Lane:
    """One simulated field and the reader polling it."""

    server: UdpTagServer
    reader: NfcpyReader
    probe: Probe

    def wait_released(self, timeout: float) -> bool:
        """Until every tag this reader connected to has left its field."""
        probe = self.probe
        with probe.changed:
            return probe.changed.wait_for(lambda: probe.releases >= len(probe.records), timeout)

    def tap(self, tag: SimTag) -> tuple[TapRecord, int]:
        """Present ``tag`` until its feedback, then take it away. Returns it and extra reads."""
        probe = self.probe
        with probe.changed:
            start = len(probe.records)
        presented = time.perf_counter_ns()
        self.server.present(tag)
        with probe.changed:
            probe.changed.wait_for(
                lambda: len(probe.records) > start and probe.records[start].feedback_ns > 0,
                DECISION_TIMEOUT_S,
            )
        self.server.remove()
        with probe.changed:
            new = probe.records[start:]
        record = new[0] if new else TapRecord(uid=tag.uid.hex().upper(), problem="missed")
        record.presented_ns = presented
        return record, max(0, len(new) - 1)


# --- the tap run ----------------------------------------------------------------------


@dataclass
class TapRun:
    records: list[TapRecord]
    warmup: int
    readers: int
    missed: int = 0
    failed: int = 0
    extra_reads: int = 0
    stuck_releases: int = 0
    wall_s: float = 0.0
    commit_interval_s: float = 0.0  # median time between consecutive taps' commits
    spacing_s: float = 0.0  # measured taps were presented at most this often
    row_bytes: int = 0
    rss_bytes: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    profile: str = ""
    profile_ms: dict[str, float] = field(default_factory=dict)


def reference_data(count: int) -> dict[str, Any]:
    refs = [f"K-{i:05d}" for i in range(count)]
    return {
        "clients": [{"ref": r, "display_name": f"Brukare {r}", "lock_status": "pending"}
                    for r in refs],
        "tags": [{"uid": tag_uid(i), "client_ref": r} for i, r in enumerate(refs)],
        "staff": [{"badge_uid": f"0A0B{i:04X}", "staff_ref": f"P-{i}"} for i in range(50)]
                 + [{"badge_uid": "0A0BFFFF", "staff_ref": STAFF_REF}],
    }


def tag_uid(index: int) -> str:
    return f"04{index:012X}"


def build_tags(count: int) -> list[SimTag]:
    return [build_tag(tag_uid(i), "NTAG215", uri=TAG_URI.format(ref=f"K-{i:05d}"))
            for i in range(count)]


def open_lanes(count: int, registrar: Registrar, changed: threading.Condition,
               profiler: cProfile.Profile | None) -> list[Lane]:
    lanes = []
    for _ in range(count):
        server = UdpTagServer()
        probe = Probe(registrar.handle, changed, profiler)
        reader = NfcpyReader(server.path, probe.on_tap, on_release=probe.on_release,
                             feedback_factory=probe.feedback_factory,
                             boottime_ns=probe.boottime_ns)
        reader.open()
        reader.start()
        lanes.append(Lane(server, reader, probe))
    return lanes


def close_lanes(lanes: Sequence[Lane]) -> None:
    for lane in lanes:
        lane.reader.stop()
        lane.server.close()


def open_registrar(workdir: Path, clients: int) -> Registrar:
    """The real store with reference data of ``clients`` clients, and the real registrar."""
    store = Store.in_dir(workdir / "agent", device_id="bench-agent")
    store.import_reference(reference_data(clients), datetime.now(UTC).isoformat())
    return Registrar(store, SystemClock(),
                     Settings(repeat_window_s=REPEAT_WINDOW_S, personal_staff_ref=STAFF_REF))


def tap_spacing_s(warmup: Sequence[TapRecord], readers: int) -> float:
    """Present taps evenly: one reader's cycle (from the warm-up) shared by all readers."""
    cycles = sorted(r.released_ns - r.presented_ns for r in warmup if r.released_ns)
    if not cycles:
        return 0.0
    return SPACING_MARGIN * cycles[len(cycles) // 2] / 1e9 / readers


def drive(lanes: Sequence[Lane], tags: Sequence[SimTag], run: TapRun,
          profiler: cProfile.Profile | None) -> None:
    """Tap every tag in turn: warm-up first, then the measured taps, evenly spaced."""
    warmup: list[TapRecord] = []
    spacing, next_at, started = 0.0, 0.0, time.perf_counter()
    for i, tag in enumerate(tags):
        if i == run.warmup:
            spacing = run.spacing_s = tap_spacing_s(warmup, len(lanes))
            started = time.perf_counter()
            for each in lanes:
                each.probe.profiler = profiler
        lane = lanes[i % len(lanes)]
        if not lane.wait_released(RELEASE_TIMEOUT_S):
            run.stuck_releases += 1
            log.warning("reader %s: tag still not released after %.0f s", lane.reader.path,
                        RELEASE_TIMEOUT_S)
        time.sleep(max(0.0, next_at - time.perf_counter()))
        next_at = time.perf_counter() + spacing
        record, extra = lane.tap(tag)
        (run.records if i >= run.warmup else warmup).append(record)
        run.extra_reads += extra if i >= run.warmup else 0
        if (i + 1) % 100 == 0:
            log.info("%d/%d taps", i + 1, len(tags))
    for lane in lanes:
        lane.wait_released(RELEASE_TIMEOUT_S)
    run.wall_s = time.perf_counter() - started


def tally(run: TapRun) -> None:
    run.missed = sum(1 for r in run.records if r.connect_ns == 0)
    run.failed = sum(1 for r in run.records if r.connect_ns and not r.ok)
    for r in run.records:
        key = r.outcome or r.problem or "none"
        run.outcomes[key] = run.outcomes.get(key, 0) + 1
    commits = sorted(r.durable_ns for r in run.records if r.durable_ns)
    gaps = sorted(b - a for a, b in itertools.pairwise(commits))
    run.commit_interval_s = gaps[len(gaps) // 2] / 1e9 if gaps else 0.0


def run_taps(taps: int, warmup: int, readers: int, workdir: Path, profile: bool) -> TapRun:
    total = taps + warmup
    clients = max(MIN_CLIENTS, total)
    registrar = open_registrar(workdir, clients)
    tags = build_tags(total)
    log.info("%d clients and tags in %s; %d taps over %d reader(s)", clients,
             registrar.store.path, total, readers)
    profiler = cProfile.Profile() if profile else None
    lanes = open_lanes(readers, registrar, threading.Condition(), None)
    run = TapRun(records=[], warmup=warmup, readers=readers)
    try:
        drive(lanes, tags, run, profiler)
    finally:
        close_lanes(lanes)
    tally(run)
    run.row_bytes = event_and_visit_bytes(registrar.store)
    run.rss_bytes = psutil.Process().memory_info().rss
    if profiler is not None:
        run.profile = profile_text(profiler)
        run.profile_ms = profile_breakdown(profiler)
    registrar.store.close()
    return run


def event_and_visit_bytes(store: Store) -> int:
    """Average bytes of an arrival's outbox row plus its visit row, as stored."""
    with store.transaction() as conn:
        event = conn.execute(
            "SELECT avg(length(event_id) + length(kind) + length(payload) + length(created_at)) "
            "FROM outbox WHERE kind = 'visit.arrived'"
        ).fetchone()[0]
        visit = conn.execute(
            "SELECT avg(length(id) + length(client_ref) + length(staff_ref) + length(tag_uid) "
            "+ length(arrived_at) + length(arrived_boot_id) + length(status) + 16) FROM visits"
        ).fetchone()[0]
    return round((event or 0) + (visit or 0))


def profile_text(profiler: cProfile.Profile) -> str:
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(PROFILE_LINES)
    return out.getvalue()


def _find(stats: dict[Any, Any], path_end: str, name: str) -> list[Any]:
    return [key for key in stats if key[0].endswith(path_end) and key[2] == name]


def profile_breakdown(profiler: cProfile.Profile) -> dict[str, float]:
    """Where Registrar.handle spends its (wall) time, in ms per tap, from a cProfile.

    Looked up by name, so a function that no longer exists simply counts as 0.
    """
    raw: dict[Any, Any] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    handles = _find(raw, "agent/visits.py", "handle")
    if not handles:
        return {}
    calls, handle_s = raw[handles[0]][1], raw[handles[0]][3]
    execute = [k for k in raw if k[2] == "<method 'execute' of 'sqlite3.Connection' objects>"]
    sql_s = sum(raw[k][2] for k in execute)
    commit_s = sum(ct for k in execute for caller, (_, _, _, ct) in raw[k][4].items()
                   if caller[2] == "transaction")
    signer_s = sum(raw[k][3] for k in _find(raw, "drivers/nfc/authenticity.py", "signer"))
    logging_s = sum(raw[k][3] for name in ("info", "warning")
                    for k in _find(raw, "logging/__init__.py", name))
    parts = {
        "handle": handle_s,
        "begin_commit_incl_fsync": commit_s,
        "other_sql": sql_s - commit_s,
        "tag_signature_check": signer_s,
        "logging": logging_s,
    }
    parts["other_python"] = handle_s - sum(v for k, v in parts.items() if k != "handle")
    return {k: 1000 * v / calls for k, v in parts.items()}


# --- baseline: bare SQLite --------------------------------------------------------------


def sqlite_baseline(path: Path, count: int, warmup: int, row_bytes: int,
                    interval_s: float = 0.0) -> list[int]:
    """Durations (ns) of one-row BEGIN IMMEDIATE/INSERT/COMMIT in WAL with synchronous=FULL.

    With ``interval_s`` a transaction starts that long after the previous one
    started, as the taps' commits did; with 0 they run back to back.
    """
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE outbox (seq INTEGER PRIMARY KEY, event_id TEXT UNIQUE, "
                     "kind TEXT, payload TEXT, created_at TEXT)")
        fixed = 32 + len("visit.arrived") + 32  # event_id, kind, created_at
        rows = [(uuid.uuid4().hex, "visit.arrived", os.urandom(max(1, row_bytes - fixed) // 2)
                 .hex(), datetime.now(UTC).isoformat()) for _ in range(count + warmup)]
        durations: list[int] = []
        begin = 0
        for row in rows:
            if begin and interval_s:
                time.sleep(max(0.0, begin / 1e9 + interval_s - time.perf_counter()))
            begin = time.perf_counter_ns()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO outbox (event_id, kind, payload, created_at) "
                         "VALUES (?, ?, ?, ?)", row)
            conn.execute("COMMIT")
            durations.append(time.perf_counter_ns() - begin)
    finally:
        conn.close()
    return durations[warmup:]


# --- memory and idle CPU ----------------------------------------------------------------


@dataclass
class IdleAgent:
    rss_bytes: int
    cpu_percent: float
    cpu_seconds: float
    window_s: float
    reader_state: str
    cpu_clock: str  # where the CPU time came from


def _wait_for_line(stream: Any, prefix: str, timeout: float) -> bool:
    """Read ``stream`` in a thread until a line starts with ``prefix``; drain the rest."""
    seen = threading.Event()

    def pump() -> None:
        for line in stream:
            log.debug("agent: %s", line.rstrip())
            if line.startswith(prefix):
                seen.set()
        seen.set()  # the process ended: let the waiter look

    threading.Thread(target=pump, daemon=True).start()
    return seen.wait(timeout)


def idle_agent(idle_s: float, workdir: Path) -> IdleAgent:
    """CPU and RSS of `python -m agent agent run` polling an empty simulated field."""
    data_dir = workdir / "idle-agent"
    with UdpTagServer() as empty_field:
        cmd = [sys.executable, "-m", "agent", "agent", "run", "--reader", empty_field.path,
               "--data-dir", str(data_dir), "--no-feedback"]
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        try:
            if not _wait_for_line(proc.stderr, "nyckelfri agent", AGENT_START_TIMEOUT_S) \
                    or proc.poll() is not None:
                raise RuntimeError(f"the agent did not start: {' '.join(cmd)}")
            time.sleep(IDLE_SETTLE_S)
            agent = psutil.Process(proc.pid)
            (before, clock), began = cpu_seconds(agent), time.perf_counter()
            time.sleep(idle_s)
            (after, _), window = cpu_seconds(agent), time.perf_counter() - began
            rss = agent.memory_info().rss
            state = _reader_state(data_dir, empty_field.path)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    cpu = after - before
    return IdleAgent(rss, 100.0 * cpu / window, cpu, window, state, clock)


def cpu_seconds(proc: psutil.Process) -> tuple[float, str]:
    """CPU time of all of a process's threads, and its source.

    Linux's per-thread ``schedstat`` counts nanoseconds; psutil's user+system counts
    10 ms ticks, too coarse for an agent that is idle nearly all the time.
    """
    tasks = Path(f"/proc/{proc.pid}/task")
    if not tasks.is_dir():
        times = proc.cpu_times()
        return times.user + times.system, "psutil user+system"
    total = 0
    for task in tasks.iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended while we looked
    return total / 1e9, "/proc schedstat"


def _reader_state(data_dir: Path, path: str) -> str:
    try:
        state = json.loads((data_dir / "agent.state.json").read_text())
    except (OSError, ValueError):
        return "unknown"
    return str(state.get("readers", {}).get(path, {}).get("state", "unknown"))


def python_rss(code: str) -> int:
    """RSS of a fresh interpreter that ran ``code`` and now sleeps."""
    script = f"{code}\nimport sys, time\nprint('ready', flush=True)\ntime.sleep({FLOOR_LIFETIME_S})"
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True)
    try:
        if not _wait_for_line(proc.stdout, "ready", FLOOR_START_TIMEOUT_S) \
                or proc.poll() is not None:
            raise RuntimeError(f"the floor interpreter did not start: {code!r}")
        return int(psutil.Process(proc.pid).memory_info().rss)
    finally:
        proc.kill()
        proc.wait()


# --- figures -----------------------------------------------------------------------------


def segments(records: Sequence[TapRecord]) -> dict[str, Spread]:
    done = [r for r in records if r.ok]
    released = [r for r in done if r.released_ns]
    return {
        "read": Spread.of([r.tap_ns - r.connect_ns for r in done]),
        "handle": Spread.of([r.durable_ns - r.tap_ns for r in done]),
        "durable": Spread.of([r.durable_ns - r.connect_ns for r in done]),
        "feedback": Spread.of([r.feedback_ns - r.connect_ns for r in done]),
        "detect": Spread.of([r.connect_ns - r.presented_ns for r in done]),
        "release": Spread.of([r.released_ns - r.feedback_ns for r in released]),
        "cycle": Spread.of([r.released_ns - r.presented_ns for r in released]),
    }


SEGMENT_LABELS = {
    "read": "on-connect -> Tap built (nfcpy reads NDEF)",
    "handle": "Tap built -> durable (Registrar.handle)",
    "durable": "on-connect -> durable",
    "feedback": "on-connect -> feedback given",
    "detect": "present -> on-connect (select, activate)",
    "release": "feedback -> on-release (nfcpy poll)",
    "cycle": "present -> on-release (one reader)",
}


def machine(workdir: Path) -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "sqlite": sqlite3.sqlite_version,
        "nfcpy": version("nfcpy"),
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
        "store_dir": str(workdir),
        "store_filesystem": filesystem_of(workdir),
    }


@dataclass(frozen=True)
class Baseline:
    back_to_back: Spread
    paced: Spread
    interval_s: float
    row_bytes: int

    def as_dict(self, ours: Spread) -> dict[str, Any]:
        return {
            "what": "bare sqlite3, WAL, synchronous=FULL, BEGIN IMMEDIATE/INSERT/COMMIT, 1 row",
            "row_bytes": self.row_bytes,
            "back_to_back_ms": asdict(self.back_to_back),
            "paced_ms": asdict(self.paced),
            "paced_interval_ms": self.interval_s * 1000,
            "ours_durable_ms": {"p50": ours.p50, "p99": ours.p99},
            "ratio_p50_vs_paced": ours.p50 / self.paced.p50,
            "ratio_p99_vs_paced": ours.p99 / self.paced.p99,
            "overhead_p50_ms_vs_paced": ours.p50 - self.paced.p50,
            "overhead_p99_ms_vs_paced": ours.p99 - self.paced.p99,
            "ratio_p50_vs_back_to_back": ours.p50 / self.back_to_back.p50,
            "ratio_p99_vs_back_to_back": ours.p99 / self.back_to_back.p99,
            "overhead_p50_ms_vs_back_to_back": ours.p50 - self.back_to_back.p50,
            "overhead_p99_ms_vs_back_to_back": ours.p99 - self.back_to_back.p99,
        }


def report(args: argparse.Namespace, host: dict[str, Any], run: TapRun, baseline: Baseline,
           idle: IdleAgent, floors: dict[str, int], log_warnings: int) -> dict[str, Any]:
    figures = segments(run.records)
    data: dict[str, Any] = {
        "machine": host,
        "taps": {
            "measured": len(run.records), "warmup": run.warmup, "readers": run.readers,
            "ok": sum(1 for r in run.records if r.ok), "failed": run.failed,
            "missed": run.missed, "extra_reads": run.extra_reads,
            "stuck_releases": run.stuck_releases, "outcomes": run.outcomes,
            "wall_s": round(run.wall_s, 2), "spacing_ms": round(run.spacing_s * 1000, 1),
            "taps_per_s": round(len(run.records) / run.wall_s, 2) if run.wall_s else None,
            "agent_log_warnings": log_warnings,
        },
        "latency_ms": {name: asdict(spread) for name, spread in figures.items()},
        "baseline": baseline.as_dict(figures["durable"]),
        "memory_rss_mib": {
            "agent_process": idle.rss_bytes / MIB,
            "python_floor": floors["python"] / MIB,
            "imports_floor": floors["imports"] / MIB,
            "benchmark_process": run.rss_bytes / MIB,
        },
        "idle_cpu": {
            "agent_percent_of_one_core": idle.cpu_percent,
            "cpu_seconds": idle.cpu_seconds, "window_s": idle.window_s,
            "reader_state": idle.reader_state, "cpu_clock": idle.cpu_clock,
        },
        "args": {"taps": args.taps, "warmup": args.warmup, "readers": args.readers,
                 "paced_rows": args.paced_rows, "idle_seconds": args.idle_seconds,
                 "profile": args.profile},
    }
    if run.profile_ms:
        data["handle_profile_ms_per_tap"] = run.profile_ms
    return data


def _row(label: str, values: Sequence[float], fmt: str = ">8.2f") -> str:
    return f"{label:<46}" + "".join(format(v, fmt) for v in values)


def table(data: dict[str, Any]) -> str:
    host, taps, lat = data["machine"], data["taps"], data["latency_ms"]
    base, mem, idle = data["baseline"], data["memory_rss_mib"], data["idle_cpu"]
    lines = [
        f"nyckelfri tap latency: {taps['measured']} taps (+{taps['warmup']} warm-up) over "
        f"{taps['readers']} udp reader(s), {taps['wall_s']:.1f} s, {taps['taps_per_s']} taps/s",
        f"machine: {host['nproc']} CPUs, Python {host['python']}, SQLite {host['sqlite']}, "
        f"nfcpy {host['nfcpy']}, {host['platform']}",
        f"load average (1 min) {host['loadavg_1m_at_start']} at start, "
        f"{host['loadavg_1m_at_end']} at end",
        f"store: {host['store_dir']} ({host['store_filesystem']})",
        f"taps: {taps['ok']} registered as arrivals, {taps['failed']} failed, "
        f"{taps['missed']} missed, {taps['extra_reads']} read twice, "
        f"{taps['stuck_releases']} not released in time; outcomes {taps['outcomes']}",
        "",
        f"{'latency (ms)':<46}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}",
    ]
    for name, label in SEGMENT_LABELS.items():
        if name == "detect":
            lines.append("pace of the run (not part of a tap's latency):")
        s = lat[name]
        lines.append(_row(label, (s["p50"], s["p90"], s["p99"], s["max"])))
    cycle, release = lat["cycle"], lat["release"]
    lines.append(
        f"  one reader completes a tap every {cycle['p50']:.0f} ms, {release['p50']:.0f} ms of it "
        f"nfcpy noticing the tag left; so taps rotate over {taps['readers']} reader(s), "
        + (f"presented every {taps['spacing_ms']:.0f} ms" if taps["spacing_ms"]
           else "presented as soon as a reader was free (no warm-up to pace by)")
    )
    hot, paced, ours = base["back_to_back_ms"], base["paced_ms"], lat["durable"]
    every = f"one every {base['paced_interval_ms']:.0f} ms"
    lines += [
        "",
        f"baseline: {base['what']} of {base['row_bytes']} B, same folder",
        f"{'':<46}{'p50':>8}{'p99':>8}",
        _row(f"bare commit, back to back ({hot['n']} rows)", (hot["p50"], hot["p99"])),
        _row(f"bare commit, {every} ({paced['n']})", (paced["p50"], paced["p99"])),
        _row("ours: on-connect -> durable", (ours["p50"], ours["p99"])),
        f"{'ratio ours / paced baseline':<46}{base['ratio_p50_vs_paced']:>7.1f}x"
        f"{base['ratio_p99_vs_paced']:>7.1f}x",
        _row("overhead beyond paced baseline (ms)",
             (base["overhead_p50_ms_vs_paced"], base["overhead_p99_ms_vs_paced"])),
        f"{'ratio ours / back-to-back baseline':<46}{base['ratio_p50_vs_back_to_back']:>7.1f}x"
        f"{base['ratio_p99_vs_back_to_back']:>7.1f}x",
        _row("overhead beyond back-to-back baseline (ms)",
             (base["overhead_p50_ms_vs_back_to_back"], base["overhead_p99_ms_vs_back_to_back"])),
        f"  taps commit {every} (in the field minutes apart); a commit after the disk idled "
        f"costs {paced['p50']:.2f} ms here, back to back {hot['p50']:.2f} ms: the paced row "
        "is the like-for-like one",
        "",
        f"{'memory and idle CPU':<46}{'RSS MiB':>8}",
        _row("agent process (`agent run`, empty udp field)", (mem["agent_process"],), ">8.1f")
        + f"   idle CPU {idle['agent_percent_of_one_core']:.3f} % of one core "
          f"({idle['cpu_seconds'] * 1000:.1f} ms in {idle['window_s']:.1f} s, reader "
          f"{idle['reader_state']})",
        _row("floor: python -c 'time.sleep(...)'", (mem["python_floor"],), ">8.1f"),
        _row("floor: python that imported the agent", (mem["imports_floor"],), ">8.1f"),
        _row("this benchmark after the run (+sim, tags)", (mem["benchmark_process"],), ">8.1f"),
        "",
        f"agent log: {taps['agent_log_warnings']} warnings (one 'closed without departure' "
        "per tap is expected)",
    ]
    profile = data.get("handle_profile_ms_per_tap")
    if profile:
        lines += ["", "Registrar.handle under cProfile (ms per tap, inflated by profiling):"]
        lines += [f"  {name:<30}{ms:>8.2f}" for name, ms in profile.items()]
    return "\n".join(lines)


# --- command line -------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--taps", type=int, default=DEFAULT_TAPS,
                        help=f"measured taps (default {DEFAULT_TAPS})")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP,
                        help=f"unmeasured taps first (default {DEFAULT_WARMUP})")
    parser.add_argument("--readers", type=int, default=DEFAULT_READERS,
                        help=f"udp readers the taps rotate over (default {DEFAULT_READERS})")
    parser.add_argument("--paced-rows", type=int, default=DEFAULT_PACED_ROWS,
                        help="bare commits spaced like the taps' commits (default "
                             f"{DEFAULT_PACED_ROWS}, at most --taps)")
    parser.add_argument("--idle-seconds", type=float, default=DEFAULT_IDLE_S,
                        help=f"idle CPU window of the agent process (default {DEFAULT_IDLE_S})")
    parser.add_argument("--dir", type=Path, default=None,
                        help="folder for the stores (default: the system's temporary folder)")
    parser.add_argument("--profile", action="store_true",
                        help="also print a cProfile of Registrar.handle over the measured taps")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("-v", "--verbose", action="store_true", help="progress on stderr")
    args = parser.parse_args(argv)
    if min(args.taps, args.readers, args.paced_rows) < 1 or args.warmup < 0:
        parser.error("--taps, --readers and --paced-rows must be at least 1, --warmup 0 or more")
    return args


def setup_logging(verbose: bool, log_file: Path) -> logging.Handler:
    """As `nyckelfri agent run` does (WARNING, nfcpy quiet), but the agent's log goes to a
    file so the table stays readable; the benchmark's own progress goes to stderr."""
    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    logging.getLogger("nfc").setLevel(logging.CRITICAL)
    mine = logging.StreamHandler(sys.stderr)
    mine.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log.addHandler(mine)
    log.propagate = False  # the benchmark's progress is not the agent's log
    log.setLevel(logging.INFO if verbose else logging.WARNING)
    return handler


def measure_baseline(args: argparse.Namespace, run: TapRun, workdir: Path) -> Baseline:
    paced_rows = min(args.taps, args.paced_rows)
    log.info("baseline: %d bare SQLite commits of %d B back to back, %d one every %.0f ms",
             args.taps, run.row_bytes, paced_rows, run.commit_interval_s * 1000)
    hot = sqlite_baseline(workdir / "baseline-hot.db", args.taps, args.warmup, run.row_bytes)
    paced = sqlite_baseline(workdir / "baseline-paced.db", paced_rows, args.warmup,
                            run.row_bytes, run.commit_interval_s)
    return Baseline(Spread.of(hot), Spread.of(paced), run.commit_interval_s, run.row_bytes)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="nyckelfri-bench-", dir=args.dir) as tmp:
        workdir = Path(tmp)
        agent_log = setup_logging(args.verbose, workdir / "agent.log")
        try:
            host = machine(workdir)
            run = run_taps(args.taps, args.warmup, args.readers, workdir, args.profile)
            baseline = measure_baseline(args, run, workdir)
            log.info("idle agent process for %.1f s", args.idle_seconds)
            idle = idle_agent(args.idle_seconds, workdir)
            floors = {"python": python_rss("pass"),
                      "imports": python_rss("import agent.cli, agent.service, agent.visits, "
                                            "drivers.nfc.reader")}
        finally:
            logging.getLogger().removeHandler(agent_log)
            agent_log.close()
        warnings = (workdir / "agent.log").read_text().count(" WARNING ")
    host["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    data = report(args, host, run, baseline, idle, floors, warnings)
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(table(data))
        if run.profile:
            print("\n" + run.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
