"""Draining a big outbox: the real SyncClient pushes a real agent Store to a real centre.

Run ``.venv/bin/python benchmarks/sync_drain.py [--events N] [--json]``. It prints
figures and baselines measured in the same run; it never asserts on time.

For each backend (SQLite, then PostgreSQL in a fresh database dropped afterwards):

* **the drain**: ``--events`` (100,000) realistic visit events (sign-ins, arrivals,
  departures, departures missing, refused taps: the shapes ``agent.visits`` writes) are
  put into a real ``agent.store.Store`` through its own ``add_event``, in transactions
  of 10,000 (the generation is not what is measured). Then the real
  :class:`sync.client.SyncClient` runs ``sync_once`` (clock, push in batches of
  ``--batch-size``, reference pull) against ``python -m central serve`` (=
  ``nyckelfri-central serve``: uvicorn, one worker) in its own process on loopback, so
  client and centre do not share a GIL. Only injection instruments it: an
  ``httpx.HTTPTransport`` subclass times each request, ``progress`` times each batch.
* **baseline, one event per request**: the same client library and centre with
  ``batch_size=1`` over ``--naive-events`` (2,000) events of another device,
  extrapolated to ``--events`` and labelled so.
* **ceiling, bulk INSERT**: the same rows (as the centre stores them) inserted straight
  into a second fresh database of the same kind and schema, one transaction per batch
  of ``--batch-size``, from this process: no HTTP, no validation, no visit fold, no
  idempotency check. The time counted is the transactions' only.
* **check**: the centre holds exactly the ids the agent marked sent, and the agent's
  outbox has nothing pending or rejected.

CPU is split between this process (the client: SyncClient, httpx, pydantic, the agent's
SQLite), the centre's processes, PostgreSQL's processes and the rest of the machine
(whatever else runs on the box: a figure to read the others by).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import os
import random
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from _common import (
    BACKENDS,
    EXIT_INTERRUPTED,
    INTERRUPTED,
    Analyzer,
    Centre,
    CpuSplit,
    RssSampler,
    Spread,
    VisitDay,
    backlog_start,
    cpu_window,
    fresh_database,
    machine,
    machine_lines,
    rate,
    sigterm_interrupts,
)

import central.db as cdb
from agent.clock import SystemClock
from agent.store import Store
from central.store import CentralStore
from routine.timekeeping import best_time
from routine.visits import VISIT_KINDS
from sync.client import SyncClient
from sync.errors import Cancelled
from sync.protocol import MAX_BATCH

log = logging.getLogger("benchmarks")

DEFAULT_EVENTS = 100_000
DEFAULT_NAIVE_EVENTS = 2_000
DEFAULT_SEED = 20261130
# A push that has not finished by then is cancelled through SyncClient's own cancel
# event: keeps a run bounded even against a centre that hangs.
DEFAULT_PUSH_CAP_S = 300.0
# Events per agent transaction while filling the outbox: big, so filling takes seconds.
FILL_CHUNK = 10_000
# Rows fetched at a time from the agent's outbox for the ceiling.
FETCH_ROWS = 5_000
DRAIN_DEVICE = "bench-drain"
NAIVE_DEVICE = "bench-naive"
MIB = 1024 * 1024


# --- instrumentation (injected) ------------------------------------------------------------


@dataclass(frozen=True)
class HttpCall:
    method: str
    path: str
    status: int
    ns: int  # request sent -> answer read


class TimingTransport(httpx.HTTPTransport):
    """httpx's own transport, timing each exchange; handed to SyncClient as ``transport``."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[HttpCall] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        began = time.perf_counter_ns()
        response = super().handle_request(request)
        response.read()
        self.calls.append(HttpCall(request.method, request.url.path, response.status_code,
                                   time.perf_counter_ns() - began))
        return response

    def spread(self, method: str, path: str) -> Spread:
        return Spread.of([c.ns for c in self.calls if c.method == method and c.path == path])


class BatchClock:
    """SyncClient's ``progress`` callback: a stamp at the start and after every batch."""

    def __init__(self) -> None:
        self.stamps: list[int] = []

    def __call__(self, done: int, total: int) -> None:
        self.stamps.append(time.perf_counter_ns())

    @property
    def push_s(self) -> float:
        return (self.stamps[-1] - self.stamps[0]) / 1e9 if len(self.stamps) > 1 else 0.0

    def cycles(self) -> Spread:
        return Spread.of([b - a for a, b in itertools.pairwise(self.stamps)])


# --- the agent's outbox --------------------------------------------------------------------


def fill_outbox(store: Store, count: int, seed: int) -> tuple[float, Counter[str]]:
    """Put ``count`` generated events into the outbox through ``Store.add_event``."""
    day = VisitDay(random.Random(seed), backlog_start(count))
    stream = itertools.islice(day.events(), count)
    kinds: Counter[str] = Counter()
    began = time.perf_counter()
    while chunk := list(itertools.islice(stream, FILL_CHUNK)):
        with store.transaction() as conn:
            for kind, stamp, data in chunk:
                store.add_event(conn, kind, stamp, data)
        kinds.update(kind for kind, _, _ in chunk)
    return time.perf_counter() - began, kinds


def outbox_payloads(path: Path) -> Iterator[dict[str, Any]]:
    """Every outbox event's payload, oldest first, from a separate read connection."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        cursor = conn.execute("SELECT payload FROM outbox ORDER BY seq")
        while rows := cursor.fetchmany(FETCH_ROWS):
            for (payload,) in rows:
                yield json.loads(payload)
    finally:
        conn.close()


# --- one push run ---------------------------------------------------------------------------


@dataclass
class PushRun:
    events: int  # pending when the run began
    batch_size: int
    sync_s: float = 0.0  # the whole sync_once: clock, push, reference pull
    push_s: float = 0.0  # first batch read -> last batch marked sent
    batches: int = 0
    sent: int = 0
    stored: int = 0
    rejected: int = 0
    remaining: int = 0
    post_ms: Spread = field(default_factory=lambda: Spread.of([]))
    cycle_ms: Spread = field(default_factory=lambda: Spread.of([]))
    cpu: CpuSplit = field(default_factory=CpuSplit)
    centre_rss_end: int = 0
    centre_rss_peak: int = 0
    http_errors: dict[str, int] = field(default_factory=dict)
    cancelled: bool = False  # cut at --push-cap

    @property
    def events_per_s(self) -> float:
        return rate(self.stored, self.push_s)

    def as_dict(self) -> dict[str, Any]:
        return {
            "events": self.events, "batch_size": self.batch_size,
            "sync_once_s": round(self.sync_s, 3), "push_s": round(self.push_s, 3),
            "events_per_s": round(self.events_per_s, 1),
            "requests_per_s": round(rate(self.batches, self.push_s), 1),
            "batches": self.batches, "sent": self.sent, "stored": self.stored,
            "rejected": self.rejected, "remaining": self.remaining,
            "post_events_ms": self.post_ms.as_dict(), "batch_cycle_ms": self.cycle_ms.as_dict(),
            "cpu": self.cpu.as_dict(),
            "centre_rss_mib_end": round(self.centre_rss_end / MIB, 1),
            "centre_rss_mib_peak": round(self.centre_rss_peak / MIB, 1),
            "http_non_2xx": self.http_errors, "cancelled_at_cap": self.cancelled,
        }


def push(centre: Centre, token: str, device: str, store: Store, batch_size: int,
         cap_s: float) -> PushRun:
    """``sync_once`` of a real SyncClient over the store's whole outbox, cancelled (through
    the client's own ``cancel`` event) if it takes longer than ``cap_s``."""
    run = PushRun(events=store.pending_count(), batch_size=batch_size)
    sent_before = store.outbox_counts()["sent"]
    transport, batches, cancel = TimingTransport(), BatchClock(), threading.Event()
    client = SyncClient(centre.url, token, device, store, store, SystemClock(), anchors=store,
                        transport=transport, batch_size=batch_size, cancel=cancel)
    timer = threading.Timer(cap_s, cancel.set)
    timer.start()
    try:
        with client, RssSampler(centre.pid) as rss, cpu_window(centre.pid) as cpu:
            began = time.perf_counter()
            try:
                report = client.sync_once(progress=batches)
            except Cancelled:
                report = None
                run.cancelled = True
                log.warning("push of %s cut at %.0f s (--push-cap)", device, cap_s)
            run.sync_s = time.perf_counter() - began
    finally:
        timer.cancel()
    run.cpu = cpu
    run.push_s = batches.push_s
    if report is not None:
        run.batches, run.sent, run.stored = (report.push.batches, report.push.sent,
                                             report.push.stored)
        run.rejected, run.remaining = len(report.push.rejected), report.push.remaining
    else:
        run.batches = len(batches.stamps) - 1
        run.stored = store.outbox_counts()["sent"] - sent_before
        run.remaining = store.pending_count()
    run.post_ms = transport.spread("POST", "/v1/events")
    run.cycle_ms = batches.cycles()
    run.centre_rss_end, run.centre_rss_peak = centre.rss(), rss.peak
    run.http_errors = dict(Counter(f"{c.method} {c.path} {c.status}"
                                   for c in transport.calls if c.status >= 300))
    return run


# --- ceiling: bulk INSERT of the same rows ----------------------------------------------------


@dataclass
class Ceiling:
    events: int = 0
    batches: int = 0
    transactions_s: float = 0.0

    @property
    def events_per_s(self) -> float:
        return rate(self.events, self.transactions_s)

    def as_dict(self) -> dict[str, Any]:
        return {"what": "plain INSERT of the centre's event rows (executemany), one "
                        "transaction per batch, no HTTP/validation/fold/idempotency check",
                "events": self.events, "batches": self.batches,
                "transactions_s": round(self.transactions_s, 3),
                "events_per_s": round(self.events_per_s, 1)}


def event_row(device: str, payload: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The row central.store inserts for this event (best_time without an anchor)."""
    at = datetime.fromisoformat(payload["at"])
    best_at, quality = best_time(at, payload["boottime_ns"], payload["boot_id"],
                                 payload["clock_synced"], None)
    visit_id = payload["data"].get("visit_id") if payload["kind"] in VISIT_KINDS else None
    return {"event_id": payload["event_id"], "device": device, "kind": payload["kind"],
            "visit_id": visit_id, "payload": payload, "device_at": at,
            "boottime_ns": payload["boottime_ns"], "boot_id": payload["boot_id"],
            "clock_synced": payload["clock_synced"], "best_at": best_at,
            "quality": str(quality), "received_at": now}


def bulk_insert(database: str, device: str, outbox: Path, batch_size: int) -> Ceiling:
    engine = cdb.create_engine(cdb.database_url(database))
    result = Ceiling()
    try:
        cdb.upgrade(engine)
        now = datetime.now(UTC)
        with cdb.write_transaction(engine) as conn:
            conn.execute(sa.insert(cdb.devices).values(
                name=device, role="device", token_hash="0" * 64, created_at=now,
                event_count=0))
        payloads = outbox_payloads(outbox)
        while batch := list(itertools.islice(payloads, batch_size)):
            rows = [event_row(device, p, now) for p in batch]  # built outside the timing
            began = time.perf_counter()
            with cdb.write_transaction(engine) as conn:
                conn.execute(sa.insert(cdb.events), rows)
            result.transactions_s += time.perf_counter() - began
            result.events += len(rows)
            result.batches += 1
    finally:
        engine.dispose()
    return result


# --- the check ----------------------------------------------------------------------------------


@dataclass
class Check:
    device: str
    pushed: int  # events in the outbox at the start
    centre_events: int  # held for the device
    centre_total: int  # held for every device
    same_ids: bool  # the centre's ids == the ids the agent marked sent
    agent_pending: int
    agent_rejected: int
    agent_sent: int

    @property
    def ok(self) -> bool:
        return (self.same_ids and self.centre_events == self.pushed == self.agent_sent
                and self.agent_pending == 0 and self.agent_rejected == 0)

    def line(self) -> str:
        verdict = "OK" if self.ok else "MISMATCH"
        return (f"{verdict}: centre holds {self.centre_events} events of {self.device} "
                f"(pushed {self.pushed}; ids {'identical to' if self.same_ids else 'DIFFER from'}"
                f" those the agent marked sent); agent outbox: {self.agent_sent} sent, "
                f"{self.agent_pending} pending, {self.agent_rejected} rejected")


def check(database: str, device: str, store: Store, pushed: int) -> Check:
    engine = cdb.create_engine(cdb.database_url(database))
    try:
        with engine.connect() as conn:
            e = cdb.events.c
            held = set(conn.execute(sa.select(e.event_id).where(e.device == device)).scalars())
            total = int(conn.execute(sa.select(sa.func.count()).select_from(cdb.events))
                        .scalar_one())
    finally:
        engine.dispose()
    with store.transaction() as conn:
        sent = {r[0] for r in conn.execute("SELECT event_id FROM outbox "
                                           "WHERE sent_at IS NOT NULL")}
    return Check(device, pushed, len(held), total, held == sent, store.pending_count(),
                 store.rejected_count(), len(sent))


def database_bytes(backend: str, database: str) -> int:
    if backend == "sqlite":
        return sum(Path(f"{database}{s}").stat().st_size for s in ("", "-wal")
                   if Path(f"{database}{s}").exists())
    engine = cdb.create_engine(cdb.database_url(database))
    try:
        with engine.connect() as conn:
            return int(conn.exec_driver_sql(
                "SELECT pg_database_size(current_database())").scalar_one())
    finally:
        engine.dispose()


# --- one backend ------------------------------------------------------------------------------


def run_backend(backend: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    folder = workdir / backend
    folder.mkdir()
    log.info("%s: filling the outboxes (%d + %d events)", backend, args.events,
             args.naive_events)
    with Store(folder / "drain-agent.db", device_id=DRAIN_DEVICE) as drain_store, \
            Store(folder / "naive-agent.db", device_id=NAIVE_DEVICE) as naive_store:
        fill_s, kinds = fill_outbox(drain_store, args.events, args.seed)
        fill_outbox(naive_store, args.naive_events, args.seed + 1)
        with fresh_database(backend, folder, "centre") as database:
            with CentralStore.open(database) as central:
                tokens = {d: central.add_device(d) for d in (DRAIN_DEVICE, NAIVE_DEVICE)}
            analyze_s = args.pg_analyze_every if backend == "postgresql" else 0.0
            with Centre(database, folder / "centre.log") as centre:
                log.info("%s: draining %d events in batches of %d", backend, args.events,
                         args.batch_size)
                with (Analyzer(database, analyze_s) if analyze_s
                      else contextlib.nullcontext()) as analyzer:
                    drain = push(centre, tokens[DRAIN_DEVICE], DRAIN_DEVICE, drain_store,
                                 args.batch_size, args.push_cap)
                analyzed = analyzer.runs if analyzer is not None else 0
                log.info("%s: %.0f events/s; baseline: %d events one per request", backend,
                         drain.events_per_s, args.naive_events)
                naive = push(centre, tokens[NAIVE_DEVICE], NAIVE_DEVICE, naive_store, 1,
                             args.push_cap)
                started_s, access_lines = centre.started_s, centre.access_log_lines()
            checks = [check(database, DRAIN_DEVICE, drain_store, drain.events),
                      check(database, NAIVE_DEVICE, naive_store, naive.events)]
            db_bytes = database_bytes(backend, database)
        log.info("%s: ceiling, bulk INSERT of the same %d rows", backend, args.events)
        with fresh_database(backend, folder, "ceiling") as database:
            ceiling = bulk_insert(database, DRAIN_DEVICE, drain_store.path, args.batch_size)
    naive_full_s = naive.push_s / max(1, naive.stored) * args.events
    return {
        "fill": {"events": args.events, "seconds": round(fill_s, 2),
                 "kinds": dict(sorted(kinds.items()))},
        "centre": {"workers": 1, "start_s": round(started_s, 2),
                   "analyze_runs_during_drain": analyzed,
                   "access_log_lines": access_lines,
                   "database_mib_after": round(db_bytes / MIB, 1)},
        "drain": drain.as_dict(),
        "one_per_request": {**naive.as_dict(),
                            "extrapolated_to": args.events,
                            "extrapolated_push_s": round(naive_full_s, 1)},
        "ceiling": ceiling.as_dict(),
        "ratios": {
            "drain_vs_one_per_request": round(drain.events_per_s / naive.events_per_s, 1),
            "drain_share_of_ceiling": round(drain.events_per_s / ceiling.events_per_s, 3),
        },
        "check": [{**asdict(c), "ok": c.ok, "line": c.line()} for c in checks],
    }


# --- output -----------------------------------------------------------------------------------


def _fmt(value: Any, spec: str) -> str:
    if value is None:
        return "-"
    return format(value, spec)


def table(data: dict[str, Any]) -> str:
    args, host, runs = data["args"], data["machine"], data["backends"]
    names = list(runs)
    width = 14

    def row(label: str, values: Sequence[Any], spec: str = ">14,.0f") -> str:
        return f"{label:<50}" + "".join(_fmt(v, spec).rjust(width) for v in values)

    def get(*path: str) -> list[Any]:
        out = []
        for name in names:
            value: Any = runs[name]
            for key in path:
                value = value[key]
            out.append(value)
        return out

    lines = [
        f"nyckelfri sync drain: {args['events']:,} buffered events, SyncClient -> centre "
        f"(python -m central serve, 1 uvicorn worker, own process) on loopback, batch size "
        f"{args['batch_size']}",
        *machine_lines(host),
        "",
        f"{'':<50}" + "".join(n.rjust(width) for n in names),
        "drain (SyncClient.sync_once over the whole outbox)",
        row("  push time (s)", get("drain", "push_s"), ">14,.1f"),
        row("  events/s", get("drain", "events_per_s")),
        row("  requests (batches)", get("drain", "batches")),
        row("  POST /v1/events p50 (ms)", get("drain", "post_events_ms", "p50"), ">14,.1f"),
        row("  POST /v1/events p99 (ms)", get("drain", "post_events_ms", "p99"), ">14,.1f"),
        row("  POST /v1/events max (ms)", get("drain", "post_events_ms", "max"), ">14,.1f"),
        row("  batch cycle p50 (ms, outbox read..mark_sent)",
            get("drain", "batch_cycle_ms", "p50"), ">14,.1f"),
        row("  client CPU (s)", get("drain", "cpu", "client_cpu_s"), ">14,.1f"),
        row("  client CPU (% of one core)", get("drain", "cpu", "client_percent_of_one_core"),
            ">14,.0f"),
        row("  centre CPU (s)", get("drain", "cpu", "centre_cpu_s"), ">14,.1f"),
        row("  centre CPU (% of one core)", get("drain", "cpu", "centre_percent_of_one_core"),
            ">14,.0f"),
        row("  PostgreSQL CPU (s)", get("drain", "cpu", "postgres_cpu_s"), ">14,.1f"),
        row("  other processes on the box CPU (s)", get("drain", "cpu", "other_cpu_s"),
            ">14,.1f"),
        row("  centre RSS at the end / peak (MiB)",
            [f"{e:.0f} / {p:.0f}" for e, p in zip(get("drain", "centre_rss_mib_end"),
                                                  get("drain", "centre_rss_mib_peak"),
                                                  strict=True)], ">14"),
        row("  whole sync_once (s, + clock and reference)", get("drain", "sync_once_s"),
            ">14,.1f"),
        f"baseline: one event per request (batch_size=1), a sample of "
        f"{args['naive_events']:,} events, EXTRAPOLATED to {args['events']:,}",
        row("  events/s (measured on the sample)", get("one_per_request", "events_per_s")),
        row("  POST /v1/events p50 (ms)", get("one_per_request", "post_events_ms", "p50"),
            ">14,.2f"),
        row("  batch cycle p50 (ms)", get("one_per_request", "batch_cycle_ms", "p50"),
            ">14,.2f"),
        row("  client / centre / PostgreSQL CPU (% of a core)",
            [f"{c:.0f}/{s:.0f}/{p:.0f}" for c, s, p in zip(
                get("one_per_request", "cpu", "client_percent_of_one_core"),
                get("one_per_request", "cpu", "centre_percent_of_one_core"),
                get("one_per_request", "cpu", "postgres_percent_of_one_core"), strict=True)],
            ">14"),
        row(f"  push time for {args['events']:,} (s, EXTRAPOLATED)",
            get("one_per_request", "extrapolated_push_s"), ">14,.0f"),
        row("  drain speed-up over one per request (x)",
            get("ratios", "drain_vs_one_per_request"), ">14,.1f"),
        f"ceiling: bulk INSERT of the same {args['events']:,} rows into a fresh database, "
        f"{args['batch_size']} per transaction, no HTTP",
        row("  events/s (transaction time only)", get("ceiling", "events_per_s")),
        row("  transactions (s)", get("ceiling", "transactions_s"), ">14,.1f"),
        row("  drain as a share of the ceiling (%)",
            [100 * v for v in get("ratios", "drain_share_of_ceiling")], ">14,.1f"),
        "",
        row("outbox fill (add_event, 10,000 per transaction, s)", get("fill", "seconds"),
            ">14,.1f"),
        row("centre database after the run (MiB)", get("centre", "database_mib_after"),
            ">14,.1f"),
        row("centre access log lines (one per request)", get("centre", "access_log_lines")),
        row("ANALYZE runs during the drain (--pg-analyze-every)",
            get("centre", "analyze_runs_during_drain")),
        "",
        "check:",
    ]
    for name in names:
        for phase in ("drain", "one_per_request"):
            if runs[name][phase]["cancelled_at_cap"]:
                lines.append(f"  {name}: the {phase} push was CUT at --push-cap "
                             f"({args['push_cap_s']:.0f} s)")
    for name in names:
        lines += [f"  {name}: {c['line']}" for c in runs[name]["check"]]
    return "\n".join(lines)


# --- command line -------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS,
                        help=f"buffered events to drain (default {DEFAULT_EVENTS:,})")
    parser.add_argument("--naive-events", type=int, default=DEFAULT_NAIVE_EVENTS,
                        help="events of the one-per-request baseline, extrapolated "
                             f"(default {DEFAULT_NAIVE_EVENTS:,})")
    parser.add_argument("--batch-size", type=int, default=MAX_BATCH,
                        help=f"SyncClient batch size (default {MAX_BATCH}, the protocol's max)")
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help=f"comma-separated, of {', '.join(BACKENDS)} (default both)")
    parser.add_argument("--pg-analyze-every", type=float, default=0.0, metavar="SECONDS",
                        help="run ANALYZE on the PostgreSQL centre's database this often "
                             "during the drain, as autovacuum would (default: never)")
    parser.add_argument("--push-cap", type=float, default=DEFAULT_PUSH_CAP_S,
                        help="seconds before a push is cancelled (default "
                             f"{DEFAULT_PUSH_CAP_S:.0f})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="event generator seed")
    parser.add_argument("--dir", type=Path, default=None,
                        help="folder for the stores (default: the system's temporary folder)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("-v", "--verbose", action="store_true", help="progress on stderr")
    args = parser.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not args.backends or set(args.backends) - set(BACKENDS):
        parser.error(f"--backends takes {' and/or '.join(BACKENDS)}")
    if min(args.events, args.naive_events) < 1:
        parser.error("--events and --naive-events must be at least 1")
    if not 1 <= args.batch_size <= MAX_BATCH:
        parser.error(f"--batch-size must be 1..{MAX_BATCH}")
    return args


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    log.setLevel(logging.INFO if verbose else logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.verbose)
    sigterm_interrupts()
    try:
        with tempfile.TemporaryDirectory(prefix="nyckelfri-drain-", dir=args.dir) as tmp:
            workdir = Path(tmp)
            host = machine(workdir, args.backends)
            runs = {backend: run_backend(backend, args, workdir) for backend in args.backends}
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return EXIT_INTERRUPTED
    host["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    data = {"machine": host,
            "args": {"events": args.events, "naive_events": args.naive_events,
                     "batch_size": args.batch_size, "backends": args.backends,
                     "seed": args.seed, "pg_analyze_every_s": args.pg_analyze_every,
                     "push_cap_s": args.push_cap},
            "backends": runs}
    print(json.dumps(data, indent=2) if args.json else table(data))
    ok = all(c["ok"] for run in runs.values() for c in run["check"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
