"""The centre as the SUN authority: provisioning NTAG 424 DNA tags, their keys for agents,
the tag policy.

- **Provisioning** is two calls. :meth:`SunAuthority.provision` checks that the routine
  lets the client have this tag (lock pending or impossible, section 5; the tag not
  another client's, taken down or lost; the unit's stock not empty) and hands out the
  tag's new five keys (the newest master key version) with the keys it holds now
  (factory zeros, or its present version's). The new version is recorded as pending
  (``tag_provisionings``) and stays the same until confirmed, so a run cut anywhere
  gets the same keys again. :meth:`SunAuthority.provisioned` verifies the URL the tag
  then reads with the NEW keys, takes its counter as the last accepted, issues the tag
  (:meth:`RoutineStore.issue_on`: stock, register, reference data) if it is new, and
  switches the tag to the new version, in one transaction. Until then its old keys stay
  current everywhere.
- **Keys for agents** (:meth:`SunAuthority.tag_keys`): the two SDM keys (never keys 0,
  3, 4, never a master key) of the active SUN tags of the asking device's unit.
- **The tag policy** agents apply to other tags: the centre setting ``tag_policy``
  (:data:`POLICY_SETTING`), ``auto`` by default: ``sun_required`` once every active tag
  is a SUN tag, ``signature`` before.

Who may provision is who may issue tags today: a provider for its own unit, or an admin.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from central import db as central_db
from central import senders, settings
from central.cases import access, refdata, rows, suncheck, tagkeys
from central.cases import db as t
from central.cases.errors import (
    AccessDenied,
    CaseConflict,
    CaseError,
    SunNotVerified,
    TagNotIssuable,
    TagStockEmpty,
)
from central.cases.tagkeys import KeyVersion
from central.cases.values import ImplementationKind
from central.store import DeviceInfo
from routine import reference
from routine import sun as sun_rules
from routine.flows import Role
from routine.tags import FINAL, TagState
from sync.protocol import (
    ProvisionedAnswer,
    ProvisionKeys,
    SunTagKeys,
    TagKeysPage,
    TagPolicy,
)

if TYPE_CHECKING:
    from central.cases.access import Actor
    from central.cases.store import RoutineStore

log = logging.getLogger(__name__)

POLICY_SETTING = "tag_policy"
URL_BASE_SETTING = "tag_url_base"
AUTO = "auto"
POLICY_CHOICES = (AUTO, *(p.value for p in TagPolicy))
DEFAULT_URL_BASE = "https://nyckelfri.example/t"
# ProvisionKeys.url_base: the URL template (base?e=<32 hex>&c=<16 hex>) must fit the
# tag's 256-byte NDEF file with room to spare.
MIN_URL_BASE, MAX_URL_BASE = 8, 200
_FINAL = [s.value for s in FINAL]


@dataclass(frozen=True)
class PolicyState:
    """The tag policy as set, and as agents are told it now."""

    setting: str  # auto | sun_required | signature | uid_only
    effective: TagPolicy
    active_tags: int  # tags agents accept (live reference records)
    sun_tags: int  # of those, tags with SUN keys at the centre


def check_policy(value: str) -> str:
    if value not in POLICY_CHOICES:
        raise CaseError(f"tag policy {value!r} is not one of {', '.join(POLICY_CHOICES)}")
    return value


def check_url_base(value: str) -> str:
    """A URL the SUN parameters can be appended to (``?e=...&c=...``), else CaseError."""
    if (not isinstance(value, str) or not MIN_URL_BASE <= len(value) <= MAX_URL_BASE
            or not value.isascii() or any(c.isspace() or c in "?#" for c in value)
            or not value.startswith(("https://", "http://"))):
        raise CaseError(
            f"URL base {value!r} is not usable: an http(s) URL of {MIN_URL_BASE}-"
            f"{MAX_URL_BASE} ASCII characters without spaces, '?' or '#' (the tag appends "
            "?e=...&c=... to it), e.g. https://vard.example.se/t")
    return value


class SunAuthority:
    """SUN provisioning, tag keys and the tag policy over the routine store."""

    def __init__(self, routine: RoutineStore, *, url_base: str = DEFAULT_URL_BASE,
                 tag_policy: str = AUTO) -> None:
        self.routine = routine
        self.default_url_base = check_url_base(url_base)
        self.default_policy = check_policy(tag_policy)

    # --- settings ----------------------------------------------------------------------------

    def url_base(self) -> str:
        with self.routine.core.read() as conn:
            return self._url_base(conn)

    def _url_base(self, conn: Connection) -> str:
        return settings.get(conn, URL_BASE_SETTING) or self.default_url_base

    def set_url_base(self, value: str) -> str:
        value = check_url_base(value)
        with self.routine.core.write() as conn:
            settings.put(conn, URL_BASE_SETTING, value, self.routine.central.now())
        log.info("SUN URL base set to %s (for tags provisioned from now on)", value)
        return value

    def policy(self) -> PolicyState:
        with self.routine.core.read() as conn:
            return self._policy(conn)

    def set_policy(self, value: str) -> PolicyState:
        value = check_policy(value)
        with self.routine.core.write() as conn:
            settings.put(conn, POLICY_SETTING, value, self.routine.central.now())
            state = self._policy(conn)
        log.info("tag policy set to %s (agents are told %s)", value, state.effective)
        return state

    def _policy(self, conn: Connection) -> PolicyState:
        setting = settings.get(conn, POLICY_SETTING) or self.default_policy
        if setting not in POLICY_CHOICES:  # written by a newer centre: the strictest known
            setting = TagPolicy.SUN_REQUIRED.value
        r, g = central_db.reference_items.c, t.nfc_tags.c
        active = sa.select(r.key).where(r.kind == reference.TAG, r.deleted.is_(False),
                                        r.data["active"].as_boolean() == sa.true())
        sun_uids = sa.select(g.uid).where(g.key_version.is_not(None), g.state.not_in(_FINAL))
        count = conn.execute(sa.select(sa.func.count()).select_from(active.subquery())).scalar()
        secured = conn.execute(sa.select(sa.func.count()).select_from(
            active.where(r.key.in_(sun_uids)).subquery())).scalar()
        active_tags, sun_tags = int(count or 0), int(secured or 0)
        if setting != AUTO:
            effective = TagPolicy(setting)
        elif active_tags and sun_tags == active_tags:
            effective = TagPolicy.SUN_REQUIRED
        else:
            effective = TagPolicy.SIGNATURE
        return PolicyState(setting, effective, active_tags, sun_tags)

    # --- master keys ---------------------------------------------------------------------------

    def rotate(self) -> int:
        """A new master key version: new provisioning uses it; tags keep theirs."""
        with self.routine.core.write() as conn:
            tagkeys.newest(conn, self.routine.central.now())  # version 1 first, if none
            return tagkeys.rotate(conn, self.routine.central.now())

    def key_versions(self) -> list[KeyVersion]:
        with self.routine.core.read() as conn:
            return tagkeys.versions(conn)

    # --- keys for agents -----------------------------------------------------------------------

    def tag_keys(self, device: DeviceInfo) -> TagKeysPage:
        """The SDM keys of the active SUN tags of ``device``'s unit, and the policy."""
        if not senders.may_push(device):
            raise access_denied(device)
        g = t.nfc_tags.c
        with self.routine.core.read() as conn:
            policy = self._policy(conn).effective
            found = [] if device.unit is None else conn.execute(
                sa.select(g.uid, g.key_version)
                .where(g.provider_unit == device.unit, g.key_version.is_not(None),
                       g.state.not_in(_FINAL)).order_by(g.uid)).all()
            masters = tagkeys.masters(conn, {version for _, version in found})
        tags = []
        for uid, version in found:
            keys = tagkeys.sdm_keys(masters[version], uid)
            tags.append(SunTagKeys(uid=uid, key_version=version, meta_read=keys.meta_read.hex(),
                                   file_read=keys.file_read.hex()))
        return TagKeysPage(policy=policy, tags=tags, server_time=self.routine.central.now())

    # --- provisioning --------------------------------------------------------------------------

    def provision(self, uid: str, client_ref: str, actor: Actor) -> ProvisionKeys:
        """The keys to provision tag ``uid`` for the client with (see the module doc)."""
        key, client = _sun_uid(uid), refdata.client_ref(client_ref)
        access.require_role(actor, (Role.PROVIDER,), "provision NFC tags")
        now = self.routine.central.now()
        with self.routine.core.write() as conn:
            tag = _tag_row(conn, key)
            unit = self._unit(conn, actor, tag, client)
            self._check_provisionable(conn, key, client, tag)
            if tag is None and _stock(conn, unit) < 1:
                raise TagStockEmpty(f"{unit} has no NFC tags in stock; add stock first "
                                    "(section 5: each provider keeps tags at hand)")
            pending = _pending(conn, key)
            version = pending.key_version if pending else tagkeys.newest(conn, now)
            _put_pending(conn, key, client, unit, version, actor.name, now)
            current = tag.key_version if tag is not None and tag.key_version else 0
            new_keys = tagkeys.key_set(conn, version, key)
            current_keys = tagkeys.key_set(conn, current, key)
            url_base = self._url_base(conn)
        log.info("tag %s: provisioning for client %s by %s with key version %d (was %d)",
                 key, client, actor.name, version, current)
        return ProvisionKeys(uid=key, client_ref=client, key_version=version,
                             keys=[k.hex() for k in new_keys],
                             current_keys=[k.hex() for k in current_keys],
                             current_key_version=current, url_base=url_base)

    def provisioned(self, uid: str, sun_url: str, actor: Actor) -> ProvisionedAnswer:
        """Confirm the provisioning with the URL the tag read back (see the module doc)."""
        key = _sun_uid(uid)
        access.require_role(actor, (Role.PROVIDER,), "provision NFC tags")
        now = self.routine.central.now()
        try:
            with self.routine.core.write() as conn:
                answer = self._confirm(conn, key, sun_url, actor, now)
        except IntegrityError:  # issued by another process between check and insert
            raise TagNotIssuable(f"tag {key} was just issued elsewhere; use another") from None
        log.info("tag %s provisioned for client %s by %s: key version %d, counter %d", key,
                 answer.client_ref, actor.name, answer.key_version, answer.counter)
        return answer

    def _confirm(self, conn: Connection, key: str, sun_url: str, actor: Actor,
                 now: Any) -> ProvisionedAnswer:
        pending = _pending(conn, key, for_update=True)
        tag = _tag_row(conn, key, for_update=True)
        if pending is None:
            return self._confirm_again(conn, key, sun_url, actor, tag, now)
        access.require_own_unit(actor, pending.provider_unit, "provision its NFC tags")
        client = pending.client_ref
        self._check_provisionable(conn, key, client, tag)
        version = pending.key_version
        reading = _verify(conn, key, sun_url, version)
        if tag is not None and tag.key_version == version:
            _check_fresh(conn, key, reading, version)  # the same keys: no counter restart
        suncheck.set_counter(conn, key, reading.counter, now)
        if tag is None:
            self.routine.tags.issue_on(conn, key, client, pending.provider_unit, actor, now)
        g = t.nfc_tags.c
        conn.execute(sa.update(t.nfc_tags).where(g.uid == key)
                     .values(key_version=version, updated_at=now, updated_by=actor.name))
        conn.execute(sa.delete(t.tag_provisionings).where(t.tag_provisionings.c.uid == key))
        return ProvisionedAnswer(uid=key, client_ref=client, key_version=version,
                                 counter=reading.counter, server_time=now)

    def _confirm_again(self, conn: Connection, key: str, sun_url: str, actor: Actor,
                       tag: Any, now: Any) -> ProvisionedAnswer:
        """No provisioning pending: a confirmation sent again (its answer was lost) is
        answered when the URL is fresh and verifies with the tag's present keys."""
        if tag is None or tag.key_version is None:
            raise CaseConflict(f"no provisioning of tag {key} is pending: ask for its keys "
                               f"first (POST /v1/tags/{key}/provision)")
        access.require_own_unit(actor, tag.provider_unit, "provision its NFC tags")
        reading = _verify(conn, key, sun_url, tag.key_version)
        _check_fresh(conn, key, reading, tag.key_version)
        suncheck.set_counter(conn, key, reading.counter, now)
        return ProvisionedAnswer(uid=key, client_ref=tag.client_ref, key_version=tag.key_version,
                                 counter=reading.counter, server_time=now)

    def _unit(self, conn: Connection, actor: Actor, tag: Any, client: str) -> str:
        """The provider unit the tag is (to be) issued by; access checked."""
        if tag is not None:
            access.require_own_unit(actor, tag.provider_unit, "provision its NFC tags")
            return str(tag.provider_unit)
        if not access.is_admin(actor):
            if actor.unit is None:
                raise CaseError(f"{access.who(actor)} has no unit to issue tags from")
            return actor.unit
        running = [i.unit for i in rows.implementations_of(conn, client)
                   if i.running and i.kind is ImplementationKind.HOME_CARE]
        if running:
            return running[0]
        if actor.unit:
            return actor.unit
        raise CaseConflict(f"client {client} has no running home care, so no provider unit to "
                           "issue the tag from: provision it with the provider's token")

    def _check_provisionable(self, conn: Connection, key: str, client: str, tag: Any) -> None:
        """The routine's tag lifecycle: TagNotIssuable with the reason and what to do."""
        self.routine.tags.check_client(conn, client)
        if tag is not None:
            if tag.client_ref != client:
                raise TagNotIssuable(
                    f"tag {key} is registered to client {tag.client_ref}, not {client}: a tag "
                    f"belongs to one client; use a new tag for {client}")
            if tag.state in _FINAL:
                raise TagNotIssuable(
                    f"tag {key} was {TagState(tag.state).value.replace('_', ' ')}: a tag is "
                    f"issued once; use a new tag for {client}")
            return
        record = refdata.record(conn, reference.TAG, key)
        if record is not None and record.get("client_ref") != client:
            raise TagNotIssuable(
                f"tag {key} is registered to client {record.get('client_ref')} in the "
                f"reference data, not {client}; use a new tag for {client}")


def access_denied(device: DeviceInfo) -> AccessDenied:
    return AccessDenied(f"{device.name} is a {device.role} (a principal): SUN tag keys are "
                        "for field agents; pull them with a device's token ('nyckelfri-central "
                        "device add NAME --unit UNIT')")


# --- helpers ---------------------------------------------------------------------------------


def _sun_uid(value: str) -> str:
    key = refdata.tag_uid(value)
    if len(key) != 2 * sun_rules.UID_LENGTH:
        raise CaseError(f"tag {key}: an NTAG 424 DNA has a {sun_rules.UID_LENGTH}-byte UID "
                        f"({2 * sun_rules.UID_LENGTH} hex digits); only those are provisioned")
    return key


def _tag_row(conn: Connection, key: str, *, for_update: bool = False) -> Any:
    query = sa.select(t.nfc_tags).where(t.nfc_tags.c.uid == key)
    return conn.execute(query.with_for_update() if for_update else query).first()


def _pending(conn: Connection, key: str, *, for_update: bool = False) -> Any:
    query = sa.select(t.tag_provisionings).where(t.tag_provisionings.c.uid == key)
    return conn.execute(query.with_for_update() if for_update else query).first()


def _put_pending(conn: Connection, key: str, client: str, unit: str, version: int,
                 by: str, now: Any) -> None:
    stmt = central_db.dialect_insert(conn, t.tag_provisionings).values(
        uid=key, client_ref=client, provider_unit=unit, key_version=version, requested_by=by,
        requested_at=now)
    # the key version of a pending provisioning never changes: a rerun gets the same keys
    conn.execute(stmt.on_conflict_do_update(
        index_elements=["uid"],
        set_={f: stmt.excluded[f] for f in ("client_ref", "provider_unit", "requested_by",
                                            "requested_at")}))


def _stock(conn: Connection, unit: str) -> int:
    s = t.tag_stock.c
    return int(conn.execute(sa.select(s.count).where(s.provider_unit == unit)).scalar() or 0)


def _verify(conn: Connection, key: str, url: str, version: int) -> sun_rules.SunReading:
    keys = tagkeys.sdm_keys(tagkeys.masters(conn, {version})[version], key)
    try:
        return sun_rules.verify_sun(url, keys, expected_uid=bytes.fromhex(key))
    except sun_rules.SunError as exc:
        raise SunNotVerified(
            f"the URL of tag {key} does not verify with key version {version} ({exc}); the "
            "provisioning is not confirmed: run it again with the tag on the reader") from None


def _check_fresh(conn: Connection, key: str, reading: sun_rules.SunReading,
                 version: int) -> None:
    try:
        sun_rules.check_counter(reading, suncheck.last_counter(conn, key))
    except sun_rules.SunReplay as exc:
        raise SunNotVerified(
            f"tag {key} at key version {version}: {exc.detail}; this URL was read before, or "
            "the tag's counter started over. Read the tag afresh and confirm again; if its "
            "counter started over, rotate the master key ('nyckelfri-central tag-keys "
            "rotate') and provision the tag again, so earlier URLs cannot be replayed") from None
