"""What the benchmarks share: a centre in its own process, fresh databases, realistic
visit events, CPU and memory meters, percentiles and the machine's description.

Not a library of the product: only the scripts in ``benchmarks/`` import it (run them
with the project's venv; ``benchmarks/`` is then first on ``sys.path``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import platform
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import psutil
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from agent.clock import Stamp

log = logging.getLogger("benchmarks")

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ("sqlite", "postgresql")
# The same server the centre's tests use (tests/central/conftest.py): trust auth,
# a database we may connect to for CREATE DATABASE.
PG_ENV = "NYCKELFRI_TEST_PG"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PG_CONNECT_TIMEOUT_S = 5
# `python -m central serve` imports FastAPI, SQLAlchemy and runs the migrations
# (~1-2 s here); a centre not answering /healthz after this is broken.
CENTRE_START_TIMEOUT_S = 30.0
CENTRE_POLL_S = 0.05
# The centre lets requests in flight finish for 10 s on SIGTERM
# (central.server.GRACEFUL_SHUTDOWN_S); past that margin it is killed.
CENTRE_STOP_TIMEOUT_S = 15.0
# How often the memory sampler looks at the centre's processes: often enough to
# catch the peak of a run lasting tens of seconds, cheap (a /proc read per process).
RSS_SAMPLE_S = 0.1
# The process name of PostgreSQL's postmaster and backends (for their CPU time).
POSTGRES_PROCESS = "postgres"
NS_PER_MS = 1e6
MIB = 1024 * 1024


# Ctrl-C or SIGTERM: the centre was stopped and the databases dropped on the way out.
EXIT_INTERRUPTED = 130
INTERRUPTED = "interrupted: the centre is stopped, its databases and files are removed"


class BenchmarkError(RuntimeError):
    """The benchmark could not run: the message says why and what to do."""


# --- interruption ------------------------------------------------------------------------


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def sigterm_interrupts() -> None:
    """SIGTERM behaves like Ctrl-C: the ``finally`` blocks stop the centre and drop databases."""
    signal.signal(signal.SIGTERM, _sigterm)


# --- figures -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Spread:
    """Percentiles in milliseconds (nearest rank), as benchmarks/tap_latency.py."""

    n: int
    p50: float
    p90: float
    p99: float
    max: float
    mean: float

    @classmethod
    def of(cls, durations_ns: Sequence[int]) -> Spread:
        if not durations_ns:
            return cls(0, math.nan, math.nan, math.nan, math.nan, math.nan)
        ms = sorted(d / NS_PER_MS for d in durations_ns)

        def rank(q: float) -> float:
            return ms[max(0, math.ceil(q / 100 * len(ms)) - 1)]

        return cls(len(ms), rank(50), rank(90), rank(99), ms[-1], sum(ms) / len(ms))

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 3) if isinstance(v, float) else v
                for k, v in (("n", self.n), ("p50", self.p50), ("p90", self.p90),
                             ("p99", self.p99), ("max", self.max), ("mean", self.mean))}


def rate(count: float, seconds: float) -> float:
    return count / seconds if seconds > 0 else math.nan


# --- the machine -------------------------------------------------------------------------


def filesystem_of(path: Path) -> str:
    best = None
    for part in psutil.disk_partitions(all=True):
        if str(path).startswith(part.mountpoint) and (
                best is None or len(part.mountpoint) > len(best.mountpoint)):
            best = part
    return f"{best.fstype} at {best.mountpoint}" if best else "unknown"


PG_SETTINGS = ("server_version", "autovacuum", "fsync", "synchronous_commit",
               "shared_buffers", "max_connections")


def pg_settings() -> dict[str, str]:
    """The PostgreSQL server's version and the settings that change these figures."""
    try:
        engine = sa.create_engine(pg_base_url(),
                                  connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S})
        try:
            with engine.connect() as conn:
                return {name: str(conn.exec_driver_sql(f"SHOW {name}").scalar_one())
                        for name in PG_SETTINGS}
        finally:
            engine.dispose()
    except sa.exc.OperationalError:
        return {"server_version": "unreachable"}


def machine(workdir: Path, backends: Sequence[str]) -> dict[str, Any]:
    from importlib.metadata import version

    return {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "memory_mib": round(psutil.virtual_memory().total / MIB),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": pg_settings() if "postgresql" in backends else None,
        "uvicorn": version("uvicorn"),
        "httpx": version("httpx"),
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
        "workdir": str(workdir),
        "workdir_filesystem": filesystem_of(workdir),
    }


def machine_lines(host: dict[str, Any]) -> list[str]:
    lines = [
        f"machine: {host['nproc']} CPUs ({host['usable_cpus']} usable), "
        f"{host['memory_mib']} MiB, Python {host['python']}, SQLite {host['sqlite']}, "
        f"uvicorn {host['uvicorn']}, httpx {host['httpx']}, {host['platform']}",
        f"load average (1 min) {host['loadavg_1m_at_start']} at start, "
        f"{host.get('loadavg_1m_at_end', '?')} at end; files in {host['workdir']} "
        f"({host['workdir_filesystem']})",
    ]
    pg = host.get("postgresql")
    if pg:
        lines.append("PostgreSQL (127.0.0.1): " + ", ".join(f"{k} {v}" for k, v in pg.items()))
        if pg.get("autovacuum") == "off":
            lines.append("  NOTE autovacuum is off on this server: a fresh database's tables get "
                         "no planner statistics during the run (see benchmarks/README.md)")
    return lines


class Analyzer:
    """Runs ANALYZE on a PostgreSQL database every ``every_s`` seconds in a thread: what
    autovacuum does on a server where it is on (``--pg-analyze-every``)."""

    def __init__(self, url: str, every_s: float) -> None:
        self.url = url
        self.every_s = every_s
        self.runs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="analyzer", daemon=True)

    def _run(self) -> None:
        engine = sa.create_engine(self.url, isolation_level="AUTOCOMMIT")
        try:
            while not self._stop.wait(self.every_s):
                with engine.connect() as conn:
                    conn.exec_driver_sql("ANALYZE")
                self.runs += 1
        finally:
            engine.dispose()

    def __enter__(self) -> Analyzer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# --- databases ---------------------------------------------------------------------------


def pg_base_url() -> sa.URL:
    url = make_url(os.environ.get(PG_ENV, DEFAULT_PG))
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url


@contextmanager
def fresh_pg_database(purpose: str) -> Iterator[str]:
    """A new, empty PostgreSQL database (its URL); dropped afterwards, also on Ctrl-C."""
    base = pg_base_url()
    name = f"nyckelfri_bench_{purpose}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT",
                             connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S})
    try:
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        except sa.exc.OperationalError as exc:
            raise BenchmarkError(
                f"PostgreSQL at {base.render_as_string(hide_password=True)} is unreachable "
                f"({str(exc.orig).strip().splitlines()[0]}); start it, set {PG_ENV} to a "
                "server where this user may CREATE DATABASE, or pass --backends sqlite"
            ) from None
        log.info("created PostgreSQL database %s", name)
        try:
            yield base.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            log.info("dropped PostgreSQL database %s", name)
    finally:
        admin.dispose()


@contextmanager
def fresh_database(backend: str, workdir: Path, purpose: str) -> Iterator[str]:
    """Where a centre's database lives: a new SQLite file, or a fresh PostgreSQL database."""
    if backend == "sqlite":
        path = workdir / f"{purpose}.db"
        try:
            yield str(path)
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
    else:
        with fresh_pg_database(purpose) as url:
            yield url


# --- the centre in its own process -----------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_rss(pid: int) -> int:
    total = 0
    for proc in process_tree(pid):
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its children (live ones)."""
    total = 0.0
    for proc in process_tree(pid):
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


class RssSampler:
    """Samples a process tree's resident memory in a thread; keeps the peak."""

    def __init__(self, pid: int, every_s: float = RSS_SAMPLE_S) -> None:
        self.pid = pid
        self.every_s = every_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            self._stop.wait(self.every_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_rss(self.pid))


class Centre:
    """``python -m central --database DB serve`` (= ``nyckelfri-central serve``) on loopback.

    Its own session, so Ctrl-C in the terminal reaches only the benchmark, which then
    stops the centre with SIGTERM (and kills its process group if that does not work).
    Its log (uvicorn's access log included, as in production) goes to a file.
    """

    def __init__(self, database: str, log_path: Path, *, workers: int = 1) -> None:
        self.database = database
        self.workers = workers
        self.log_path = log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_s = 0.0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        cmd = [sys.executable, "-m", "central", "--database", self.database, "serve",
               "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers)]
        began = time.perf_counter()
        with self.log_path.open("ab") as log_file:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.DEVNULL,
                                         stdout=log_file, stderr=log_file,
                                         start_new_session=True)
        self._wait_ready()
        self.started_s = time.perf_counter() - began
        log.info("centre pid %d on %s (%d worker(s)) answered after %.1f s", self.pid,
                 self.url, self.workers, self.started_s)

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + CENTRE_START_TIMEOUT_S
        with httpx.Client(timeout=1.0) as http:
            while True:
                if self.proc.poll() is not None:
                    raise BenchmarkError(f"the centre exited with {self.proc.returncode} while "
                                         f"starting; its log: {self.log_path}\n"
                                         + self.log_tail())
                try:
                    if http.get(f"{self.url}/healthz").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise BenchmarkError(f"the centre did not answer /healthz within "
                                         f"{CENTRE_START_TIMEOUT_S} s; its log: {self.log_path}")
                time.sleep(CENTRE_POLL_S)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(CENTRE_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.warning("centre pid %d did not stop within %.0f s; killing its process group",
                        proc.pid, CENTRE_STOP_TIMEOUT_S)
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: only the centre's processes
            proc.wait()
        else:
            # Workers left behind by a supervisor that died (never seen; be sure).
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

    def __enter__(self) -> Centre:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def rss(self) -> int:
        return tree_rss(self.pid)

    def processes(self) -> list[psutil.Process]:
        return process_tree(self.pid)

    def cpu_s(self) -> float:
        return tree_cpu_s(self.pid)

    def access_log_lines(self) -> int:
        try:
            with self.log_path.open("rb") as f:
                return sum(1 for line in f if b'HTTP/1.1"' in line)
        except OSError:
            return 0


# --- CPU accounting ----------------------------------------------------------------------


@dataclass
class CpuSplit:
    """CPU seconds over a window: this process (the client), the centre's processes,
    PostgreSQL's processes, and the rest of the machine (other work on the box)."""

    wall_s: float = 0.0
    client_s: float = 0.0
    centre_s: float = 0.0
    postgres_s: float = 0.0
    machine_busy_s: float = 0.0  # all CPUs, all processes, kernel included

    @property
    def other_s(self) -> float:
        return max(0.0, self.machine_busy_s - self.client_s - self.centre_s - self.postgres_s)

    def as_dict(self) -> dict[str, float]:
        cores = os.cpu_count() or 1

        def percent(seconds: float, of: float = 1.0) -> float:
            return round(100 * seconds / self.wall_s / of, 1) if self.wall_s else math.nan

        return {
            "wall_s": round(self.wall_s, 3),
            "client_cpu_s": round(self.client_s, 3),
            "centre_cpu_s": round(self.centre_s, 3),
            "postgres_cpu_s": round(self.postgres_s, 3),
            "other_cpu_s": round(self.other_s, 3),
            "client_percent_of_one_core": percent(self.client_s),
            "centre_percent_of_one_core": percent(self.centre_s),
            "postgres_percent_of_one_core": percent(self.postgres_s),
            "other_percent_of_one_core": percent(self.other_s),
            "machine_busy_percent": percent(self.machine_busy_s, cores),
        }


def _machine_busy_s() -> float:
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


def postgres_cpu_s() -> float:
    """CPU seconds of this machine's PostgreSQL processes (server and backends) so far."""
    total = 0.0
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] != POSTGRES_PROCESS:
            continue
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


@contextmanager
def cpu_window(centre_pid: int) -> Iterator[CpuSplit]:
    """Measures the ``with`` block: the split is filled in when the block ends.

    PostgreSQL's backends that end inside the window take their CPU time with them:
    the centre keeps its pooled connections open, so that is rare.
    """
    me = psutil.Process()
    split = CpuSplit()
    mine0, centre0, pg0 = me.cpu_times(), tree_cpu_s(centre_pid), postgres_cpu_s()
    busy0, wall0 = _machine_busy_s(), time.perf_counter()
    try:
        yield split
    finally:
        mine1 = me.cpu_times()
        split.wall_s = time.perf_counter() - wall0
        split.client_s = (mine1.user + mine1.system) - (mine0.user + mine0.system)
        split.centre_s = tree_cpu_s(centre_pid) - centre0
        split.postgres_s = max(0.0, postgres_cpu_s() - pg0)
        split.machine_busy_s = _machine_busy_s() - busy0


# --- realistic visit events --------------------------------------------------------------

READERS = ("usb:054c:06c3", "tty:AMA0:pn532")
PRODUCT = "NXP NTAG215"
# Shares of what happens at a door, from the routine's visit rules: most visits end with
# a departure tap; some are closed by a tap at the next client ("departure missing");
# a few taps are refused (unknown tag, lock installed, no one signed in).
P_DEPARTURE_MISSING = 0.05
P_REFUSED = 0.02
VISITS_PER_SHIFT = (6, 12)
VISIT_MINUTES = (10, 50)
TRAVEL_MINUTES = (4, 20)


@dataclass
class VisitDay:
    """Generates what a shared agent records over shifts: sign-ins, visits, refusals.

    The events are the shapes ``agent.visits.Registrar`` writes (same kinds, same data
    keys); ids are fresh UUIDs, times advance like a working day, one boot, NTP synced.
    """

    rng: random.Random
    start: datetime
    boot_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    clients: int = 2000
    staff: int = 60
    _wall: datetime = field(init=False)
    _boot_ns: int = field(init=False)

    def __post_init__(self) -> None:
        self._wall = self.start
        self._boot_ns = 3_600_000_000_000  # an hour after boot

    def _advance(self, minutes: float) -> Stamp:
        self._wall += timedelta(minutes=minutes)
        self._boot_ns += int(minutes * 60e9)
        return Stamp(self._wall, self._boot_ns, self.boot_id, True)

    def _signature(self) -> str:
        return f"{self.rng.getrandbits(256):064x}"

    def events(self) -> Iterator[tuple[str, Stamp, dict[str, Any]]]:
        """An endless stream of (kind, stamp, data), shift after shift."""
        while True:
            yield from self._shift()

    def _shift(self) -> Iterator[tuple[str, Stamp, dict[str, Any]]]:
        rng = self.rng
        staff_ref = f"P-{rng.randrange(self.staff):03d}"
        reader = rng.choice(READERS)
        stamp = self._advance(rng.uniform(1, 30))
        yield "staff.signed_in", stamp, {"staff_ref": staff_ref,
                                         "badge_uid": f"0A0B{rng.randrange(65536):04X}",
                                         "reader": reader}
        left_open: dict[str, Any] | None = None
        for _ in range(rng.randint(*VISITS_PER_SHIFT)):
            if rng.random() < P_REFUSED:
                yield self._refused(staff_ref, reader)
            client = rng.randrange(self.clients)
            stamp = self._advance(rng.uniform(*TRAVEL_MINUTES))
            if left_open is not None:  # the tap here closes the visit left open
                yield self._missing(left_open, "tap_at_other_client", f"K-{client:05d}", stamp)
                left_open = None
            visit = {"visit_id": uuid.uuid4().hex, "client_ref": f"K-{client:05d}",
                     "staff_ref": staff_ref, "tag_uid": f"04{client:012X}",
                     "arrived_at": stamp.wall_iso}
            signature = self._signature()
            yield "visit.arrived", stamp, {
                "visit_id": visit["visit_id"], "client_ref": visit["client_ref"],
                "staff_ref": staff_ref, "tag_uid": visit["tag_uid"], "reader": reader,
                "product": PRODUCT, "signature": signature, "tag_signer": "nxp",
                "method": "nfc_tag"}
            minutes = rng.uniform(*VISIT_MINUTES)
            stamp = self._advance(minutes)
            if rng.random() < P_DEPARTURE_MISSING:
                left_open = visit
                continue
            yield "visit.departed", stamp, {
                "visit_id": visit["visit_id"], "client_ref": visit["client_ref"],
                "staff_ref": staff_ref, "tag_uid": visit["tag_uid"], "reader": reader,
                "arrived_at": visit["arrived_at"], "duration_s": round(minutes * 60, 3),
                "signature": signature, "tag_signer": "nxp", "method": "nfc_tag"}
        if left_open is not None:  # closed later, when it has been open too long
            yield self._missing(left_open, "open_too_long", None, self._advance(240))

    def _refused(self, staff_ref: str, reader: str) -> tuple[str, Stamp, dict[str, Any]]:
        stamp = self._advance(self.rng.uniform(0.1, 2))
        return "tap.refused", stamp, {
            "uid": f"04{self.rng.getrandbits(48):012X}",
            "reason": self.rng.choice(("unknown_tag", "lock_installed")), "detail": "",
            "client_ref": None, "staff_ref": staff_ref, "reader": reader, "product": PRODUCT,
            "signature": self._signature(), "tag_signer": "nxp"}

    def _missing(self, visit: dict[str, Any], reason: str, other: str | None,
                 stamp: Stamp) -> tuple[str, Stamp, dict[str, Any]]:
        return "visit.departure_missing", stamp, {
            "visit_id": visit["visit_id"], "client_ref": visit["client_ref"],
            "staff_ref": visit["staff_ref"], "arrived_at": visit["arrived_at"],
            "reason": reason, "noticed_at_client_ref": other}


# Average minutes between two generated events (measured from VisitDay): starting
# this many minutes per event ago, a backlog ends about now.
MINUTES_PER_EVENT = 21.0


def backlog_start(events: int) -> datetime:
    """When a backlog of ``events`` generated events must start to end about now."""
    return datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=MINUTES_PER_EVENT
                                                                 * events)
