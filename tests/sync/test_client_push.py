"""Pushing the outbox: batches, mark_sent only what is stored, rejections set aside."""

from __future__ import annotations

import json
import logging

import httpx

from tests.sync.conftest import CUT, add_events


def test_batches_and_marks_exactly_what_is_stored(make_client, centre, store, clock):
    ids = add_events(store, clock, 7)
    progress = []
    report = make_client(batch_size=3).push_all(lambda done, total: progress.append((done, total)))
    assert centre.pushed_ids() == [ids[:3], ids[3:6], ids[6:]]
    assert (report.sent, report.stored, report.batches, report.remaining) == (7, 7, 3, 0)
    assert store.pending_count() == 0 and store.outbox_counts()["sent"] == 7
    assert progress == [(0, 7), (3, 7), (6, 7), (7, 7)]
    assert list(centre.events) == ids


def test_sent_at_is_the_centres_time_of_acknowledgement(make_client, centre, store, clock):
    [eid] = add_events(store, clock, 1)
    make_client().push_all()
    row = store.conn.execute("SELECT sent_at FROM outbox WHERE event_id = ?", (eid,)).fetchone()
    assert row["sent_at"].startswith("2026-11-30T08:00:")


def test_nothing_pending_sends_nothing(make_client, centre):
    report = make_client().push_all()
    assert centre.requests == [] and report.sent == 0


def test_connection_cut_after_commit_resends_and_nothing_doubles(make_client, centre, store,
                                                                  clock, sleeps):
    ids = add_events(store, clock, 4)
    centre.faults.append(CUT)  # the centre commits, the agent never hears the answer
    report = make_client().push_all()
    first, second = centre.posts()
    assert first.content == second.content  # the same batch, re-sent as is
    assert list(centre.events) == ids  # held once each
    assert report.stored == 4 and store.pending_count() == 0
    assert len(sleeps.waits) == 1


def test_rejected_events_are_set_aside_and_do_not_block_the_rest(make_client, centre, store,
                                                                 clock, caplog):
    ids = add_events(store, clock, 5)
    centre.rejects[ids[1]] = "event of device 'x' pushed by 'test-agent'"
    with caplog.at_level(logging.ERROR, logger="sync.client"):
        report = make_client(batch_size=2).push_all()
    assert [r.event_id for r in report.rejected] == [ids[1]]
    assert report.stored == 4 and store.pending_count() == 0
    assert [e.event_id for e in store.pending_events()] == []
    assert store.outbox_counts() == {"total": 5, "sent": 4, "pending": 0}
    [aside] = store.rejected_events()
    assert aside["event_id"] == ids[1] and "pushed by" in aside["rejected_reason"]
    assert any(ids[1] in r.message and "pushed by" in r.message for r in caplog.records)
    # not sent again on the next round, but still there for a person
    centre.requests.clear()
    assert make_client().push_all().sent == 0 and centre.posts() == []
    assert store.rejected_count() == 1


def test_events_neither_stored_nor_rejected_stay_pending(make_client, centre, store, clock):
    ids = add_events(store, clock, 3)
    centre.forget.add(ids[0])
    report = make_client().push_all()
    assert report.stored == 2 and report.unacknowledged == 1 and report.remaining == 1
    assert [e.event_id for e in store.pending_events()] == [ids[0]]
    assert len(centre.posts()) == 2  # one retry of the rest of the batch, then it stops


def test_batch_too_large_is_halved(make_client, centre, store, clock):
    ids = add_events(store, clock, 5)
    centre.max_events = 2
    client = make_client()
    report = client.push_all()
    assert report.stored == 5 and store.pending_count() == 0
    assert [len(b) for b in centre.pushed_ids()] == [5, 2, 3, 1, 2]  # 413, ok, 413, ok, ok
    assert list(centre.events) == ids
    centre.max_events = None
    add_events(store, clock, 3)
    client.push_all()  # the next round starts from the configured size again
    assert [len(b) for b in centre.pushed_ids()[5:]] == [3]


def test_single_event_too_large_is_set_aside(make_client, centre, store, clock):
    [eid] = add_events(store, clock, 1)
    centre.max_events = 0
    report = make_client().push_all()
    assert [r.event_id for r in report.rejected] == [eid]
    assert "413" in store.rejected_events()[0]["rejected_reason"]


def test_event_that_is_not_protocol_is_set_aside_locally(make_client, centre, store, clock):
    ids = add_events(store, clock, 2)
    bad = json.loads(store.conn.execute("SELECT payload FROM outbox WHERE event_id = ?",
                                        (ids[0],)).fetchone()[0])
    bad["at"] = "2026-11-30T08:00:00"  # no UTC offset: the centre could never place it
    store.conn.execute("UPDATE outbox SET payload = ? WHERE event_id = ?",
                       (json.dumps(bad), ids[0]))
    report = make_client().push_all()
    assert [r.event_id for r in report.rejected] == [ids[0]]
    assert report.rejected[0].reason.startswith("agent: not a valid protocol-1 event (at:")
    assert centre.pushed_ids() == [[ids[1]]]


def test_push_carries_the_best_clock_sample_of_the_boot(make_client, centre, store, clock):
    add_events(store, clock, 1)
    client = make_client()
    centre.latency_s = 0.040
    client.measure_clock()
    centre.latency_s = 0.200  # a worse round trip later does not replace it
    client.measure_clock()
    client.push_all()
    [sample] = centre.clocks
    assert sample.rtt_ns == 40_000_000 and sample.boot_id == "test-boot"


def test_push_without_any_clock_sample_sends_none(make_client, centre, store, clock):
    add_events(store, clock, 1)
    make_client().push_all()
    assert centre.clocks == [None]


def test_a_refused_push_still_pulls_reference(make_client, centre, store, clock):
    from sync.errors import RejectedRequest
    from sync.protocol import ReferenceItem

    add_events(store, clock, 1)
    centre.reference = [ReferenceItem(kind="client", key="K-9", version=1,
                                      data={"lock_status": "installed"})]
    centre.faults.extend([None, httpx.Response(422, json={"error": "invalid_request",
                                                          "detail": "events.0.kind: bad"})])
    try:
        make_client().sync_once()
    except RejectedRequest as exc:
        assert "events.0.kind" in str(exc)
    else:
        raise AssertionError("the 422 must be reported")
    assert store.reference_cursor() == 1 and store.pending_count() == 1
