"""The sync endpoints of :mod:`sync.protocol`: the centre's clock, pushing events,
pulling reference data. Hostile event data is the store's to refuse (per event)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from central import enrolment, senders
from central.http.dependencies import DeviceDep, StoreDep, require_json
from central.http.middleware import require_protocol
from central.http.problems import AUTHED, COMMON, WITH_BODY, ApiProblem
from central.storable import MAX_INT64
from sync.protocol import (
    MAX_REFERENCE_PAGE,
    ClockResponse,
    EnrolAnswer,
    EnrolRequest,
    PushRequest,
    PushResponse,
    ReferencePage,
)

router = APIRouter(prefix="/v1", dependencies=[Depends(require_protocol)], tags=["sync"])


@router.get("/clock", response_model=ClockResponse, responses=COMMON)
def clock(store: StoreDep) -> ClockResponse:
    """The centre's clock, for the agent's offset measurement (no token needed)."""
    return ClockResponse(server_time=store.now())


@router.post("/events", response_model=PushResponse, responses=WITH_BODY,
             dependencies=[Depends(require_json)])
def push(body: PushRequest, device: DeviceDep, store: StoreDep) -> PushResponse:
    """Store a batch of the device's events once each; answers after they are durable.

    ``stored`` lists every id of the batch the centre now holds (new or already
    there); ``rejected`` those it never will, with the reason.
    """
    if body.device_id != device.name:
        raise ApiProblem(403, "wrong_device", f"the token belongs to {device.name!r}, the batch "
                         f"to {body.device_id!r}", "push with the device's own token")
    # The store rejects, per event, what it cannot hold and events of other devices;
    # a clock sample it cannot keep is a 422 (InvalidClockSample).
    result = store.ingest(device, body.events, body.clock)
    return PushResponse(stored=list(result.stored), rejected=list(result.rejected),
                        server_time=store.now())


@router.get("/reference", response_model=ReferencePage, responses=AUTHED)
def reference(
    device: DeviceDep, store: StoreDep,
    since: Annotated[int, Query(ge=0, le=MAX_INT64, description="cursor of the last page")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_REFERENCE_PAGE)] = MAX_REFERENCE_PAGE,
) -> ReferencePage:
    """Reference records changed after ``since``, oldest first (for agents: device tokens)."""
    if not senders.may_push(device):
        raise ApiProblem(403, "forbidden", f"{device.name} is a {device.role} (a principal): "
                         "the agents' reference data is for devices",
                         "pull it with a device's token ('nyckelfri-central device add NAME'); "
                         "principals read the routine's API")
    items, cursor, more = store.reference_since(since, limit)
    return ReferencePage(items=items, cursor=cursor, more=more, server_time=store.now())


@router.post("/enrol", response_model=EnrolAnswer, responses=WITH_BODY,
             dependencies=[Depends(require_json)])
def enrol(body: EnrolRequest, store: StoreDep) -> EnrolAnswer:
    """Trade a one-time enrolment code for the device's token (no token needed).

    The code is used up; the device's earlier token, if any, stops working.
    """
    try:
        token = enrolment.redeem(store, body.device_id, body.passcode)
    except enrolment.EnrolmentRefused as exc:
        raise ApiProblem(403, "enrolment_refused", str(exc),
                         "ask the centre's administrator for a new code "
                         "('nyckelfri-central device enrol-code NAME --url URL')") from None
    return EnrolAnswer(device_id=body.device_id, token=token, server_time=store.now())
