"""The bodies of the administration and health answers (the sync ones are
:mod:`sync.protocol`'s). Each carries the centre's clock as ``server_time``."""

from __future__ import annotations

from datetime import datetime

from sync.protocol import Model, ReferenceKind


class DeviceOut(Model):
    name: str
    role: str
    created_at: datetime
    revoked_at: datetime | None
    last_seen_at: datetime | None
    events: int


class DeviceList(Model):
    devices: list[DeviceOut]
    server_time: datetime


class ImportAnswer(Model):
    imported: dict[str, int]
    server_time: datetime


class ReferenceChange(Model):
    kind: ReferenceKind
    key: str
    version: int
    deleted: bool
    server_time: datetime


class VisitOut(Model):
    device: str
    visit_id: str
    client_ref: str
    staff_ref: str
    tag_uid: str | None
    method: str
    arrived_at: datetime | None
    arrived_quality: str | None
    departed_at: datetime | None
    departed_quality: str | None
    status: str
    close_reason: str | None
    updated_at: datetime


class VisitList(Model):
    visits: list[VisitOut]
    server_time: datetime


class Health(Model):
    status: str
    database: str  # sqlite | postgresql
    server_time: datetime
