"""Administration (reference data, devices, visits; admin tokens only) and health.

Reference data the databases cannot hold, or that does not validate, is the
store's to refuse (422, nothing changed).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from central.http.answers import (
    DeviceList,
    DeviceOut,
    Health,
    ImportAnswer,
    ReferenceChange,
    VisitList,
    VisitOut,
)
from central.http.dependencies import AdminDep, StoreDep, require_json
from central.http.middleware import require_protocol
from central.http.problems import AUTHED, WITH_BODY, problem_responses
from sync.protocol import ReferenceKind

# Keys and references in paths and queries: printable, as long as the store's keys.
_PRINTABLE = r"^[^\x00-\x1f\x7f]+$"
Key = Annotated[str, Path(min_length=1, max_length=128, pattern=_PRINTABLE)]
Ref = Annotated[str | None, Query(min_length=1, max_length=128, pattern=_PRINTABLE)]

router = APIRouter(prefix="/v1", dependencies=[Depends(require_protocol)], tags=["admin"])
operations = APIRouter(tags=["operations"])


@router.post("/admin/reference", response_model=ImportAnswer, responses=WITH_BODY,
             dependencies=[Depends(require_json)])
def import_reference(body: dict[str, Any], _admin: AdminDep, store: StoreDep) -> ImportAnswer:
    """Import a reference document (clients, tags, staff, locks); all or nothing."""
    return ImportAnswer(imported=store.import_reference(body), server_time=store.now())


@router.put("/admin/reference/{kind}/{key}", response_model=ReferenceChange,
            responses=WITH_BODY, dependencies=[Depends(require_json)])
def set_reference(kind: ReferenceKind, key: Key, body: dict[str, Any], _admin: AdminDep,
                  store: StoreDep) -> ReferenceChange:
    """Create or replace one reference record; agents receive it on their next pull."""
    version = store.upsert_reference(kind, key, body)
    return ReferenceChange(kind=kind, key=key, version=version, deleted=False,
                           server_time=store.now())


@router.delete("/admin/reference/{kind}/{key}", response_model=ReferenceChange,
               responses=AUTHED)
def delete_reference(kind: ReferenceKind, key: Key, _admin: AdminDep,
                     store: StoreDep) -> ReferenceChange:
    """Delete one reference record; agents remove it on their next pull."""
    version = store.delete_reference(kind, key)
    return ReferenceChange(kind=kind, key=key, version=version, deleted=True,
                           server_time=store.now())


@router.get("/admin/devices", response_model=DeviceList, responses=AUTHED)
def devices(_admin: AdminDep, store: StoreDep) -> DeviceList:
    """Every enrolled device, with its role, last contact and event count."""
    rows = [DeviceOut.model_validate(d, from_attributes=True) for d in store.list_devices()]
    return DeviceList(devices=rows, server_time=store.now())


@router.get("/visits", response_model=VisitList, responses=AUTHED)
def visits(
    _admin: AdminDep, store: StoreDep,
    day: Annotated[date | None, Query(description="local day, YYYY-MM-DD")] = None,
    client: Ref = None, staff: Ref = None,
) -> VisitList:
    """Visits rebuilt from the events received (routine section 5)."""
    rows = store.visits(day=day, client_ref=client, staff_ref=staff)
    return VisitList(visits=[VisitOut.model_validate(v, from_attributes=True) for v in rows],
                     server_time=store.now())


@operations.get("/healthz", response_model=Health, responses=problem_responses(500, 503))
def healthz(store: StoreDep) -> Health:
    """Liveness and database reachability (no token, no protocol header)."""
    store.ping()  # SELECT 1: DatabaseUnavailable (503) when the database does not answer
    return Health(status="ok", database=store.dialect, server_time=store.now())
