"""An agent whose clock says 1970 taps before it can sync; once it syncs in that boot,
the centre shows the visit at the right time (real HTTP, real centre)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from agent.clock import FixedClock
from agent.store import Store
from agent.visits import Registrar, Settings
from central.api import create_app
from central.server import run_in_thread
from central.store import CentralStore
from drivers.nfc.base import Tap
from sync.client import SyncClient
from tests.central.conftest import database_url  # noqa: F401 - sqlite + postgresql
from tests.conftest import BADGE_ANNA, CLIENT_TAG, REFERENCE

TOLERANCE = timedelta(seconds=5)  # the round trip on loopback is milliseconds


def tap(uid: str) -> Tap:
    return Tap("udp:x", uid, "NXP NTAG215", "Type2Tag")


def test_a_1970_clock_yields_correct_visit_times_after_sync(database_url, tmp_path):  # noqa: F811
    centre = CentralStore.open(database_url)
    token = centre.add_device("pi-7")
    agent = Store(tmp_path / "agent.db", device_id="pi-7")
    agent.import_reference(REFERENCE, "t")
    # flat RTC battery: the wall clock starts at the epoch, not synchronised
    clock = FixedClock(datetime(1970, 1, 1, 0, 1, tzinfo=UTC), synced=False, boot_id="b-1")
    reg = Registrar(agent, clock, Settings())
    reg.handle(tap(BADGE_ANNA))
    reg.handle(tap(CLIENT_TAG))  # arrival
    clock.advance(25 * 60)
    reg.handle(tap(CLIENT_TAG))  # departure
    clock.advance(10 * 60)  # ten minutes later the network is back
    try:
        with run_in_thread(create_app(centre)) as (_s, _t, url), SyncClient(
            url, token, "pi-7", agent, agent, clock, anchors=agent, clock_samples=1,
            wall_clock=lambda: clock.wall,
        ) as client:
            report = client.sync_once()
            synced_at = datetime.now(UTC)
        assert report.offset_s > 50 * 365 * 86400  # the device was decades behind
        [visit] = centre.visits()
        expected_arrival = synced_at - timedelta(minutes=35)
        assert abs(visit.arrived_at - expected_arrival) < TOLERANCE
        assert visit.departed_at - visit.arrived_at == timedelta(minutes=25)
        assert (visit.arrived_quality, visit.departed_quality) == ("corrected", "corrected")
        # the day filter uses the corrected time, not 1970 (days are Stockholm days)
        day = visit.arrived_at.astimezone(ZoneInfo("Europe/Stockholm")).date()
        assert [v.visit_id for v in centre.visits(day=day)] == [visit.visit_id]
    finally:
        agent.close()
        centre.close()
