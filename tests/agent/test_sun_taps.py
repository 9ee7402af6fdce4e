"""Taps of NTAG 424 DNA tags: SUN verified offline, a durable counter, the tag policy.

The SUN URLs are made here from the primitives of :mod:`routine.sun` (checked against
NXP's AN12196 examples in tests/routine/test_sun.py) with keys diversified per tag,
exactly as a provisioned tag makes them; the store is a real SQLite file.
"""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from agent.store import Store
from agent.visits import Outcome, Refusal, Registrar, Settings
from drivers.nfc.authenticity import GENUINE_NXP
from drivers.nfc.base import NdefRecordInfo, Tap
from drivers.sim.tags import SIM_PUBLIC_KEY_HEX, sign_uid
from routine import sun
from sync.protocol import SunTagKeys, TagPolicy
from tests.conftest import BADGE_ANNA, CLIENT_TAG, OTHER_CLIENT_TAG, REFERENCE

MASTER = bytes.fromhex("00112233445566778899aabbccddeeff")
BASE = "https://nyckelfri.example/t"


def key_set(uid: str) -> list[bytes]:
    return sun.tag_key_set(MASTER, bytes.fromhex(uid))


def sun_url(uid: str, counter: int, keys: list[bytes] | None = None,
            picc_uid: str | None = None) -> str:
    """The URL an NTAG 424 DNA with SDM (encrypted PICC data, MAC over nothing) gives."""
    keys = keys or key_set(uid)
    named = bytes.fromhex(picc_uid or uid)
    plain = bytes([sun.PICC_DATA_TAG]) + named + counter.to_bytes(3, "little") + os.urandom(5)
    enc = Cipher(algorithms.AES(keys[sun.KEY_SDM_META_READ]), modes.CBC(bytes(16))).encryptor()
    e = enc.update(plain) + enc.finalize()
    mac = sun.sdm_mac(keys[sun.KEY_SDM_FILE_READ], named, counter)
    return f"{BASE}?e={e.hex().upper()}&c={mac.hex().upper()}"


def tap(uid: str, url: str | None = None, *, signature: str | None = None) -> Tap:
    records = () if url is None else (NdefRecordInfo(type="urn:nfc:wkt:U", name="", uri=url),)
    return Tap(reader="udp:127.0.0.1:1", uid=uid, product="NXP NTAG 424 DNA",
               tag_type="Type4Tag", ndef=records, signature=signature)


def give_keys(store: Store, *uids: str, policy: TagPolicy = TagPolicy.SIGNATURE) -> None:
    store.replace_tag_keys(str(policy), [
        SunTagKeys(uid=u, key_version=1, meta_read=key_set(u)[2].hex(),
                   file_read=key_set(u)[1].hex()) for u in uids])


@pytest.fixture
def reg(store, clock):
    give_keys(store, CLIENT_TAG)
    # a personal device: no badge needed, so each test looks at the door tag alone
    return Registrar(store, clock, Settings(repeat_window_s=30, personal_staff_ref="P-anna"))


def last_event(store):
    return store.pending_events(1000)[-1].payload


def test_a_fresh_sun_registers_and_its_counter_is_used_up(reg, store, clock):
    d = reg.handle(tap(CLIENT_TAG, sun_url(CLIENT_TAG, 7)))
    assert d.outcome is Outcome.ARRIVAL and d.client_ref == "K-1"
    event = last_event(store)
    assert event["kind"] == "visit.arrived"
    assert event["data"]["sun"]["verdict"] == "ok" and event["data"]["sun"]["counter"] == 7
    assert store.sun_counters() == {CLIENT_TAG: 7}
    clock.advance(1200)
    d = reg.handle(tap(CLIENT_TAG, sun_url(CLIENT_TAG, 8)))
    assert d.outcome is Outcome.DEPARTURE
    assert store.sun_counters() == {CLIENT_TAG: 8}


@pytest.mark.parametrize("counter", [7, 3], ids=["same-url", "older-url"])
def test_a_replayed_url_is_refused_and_the_counter_stays(reg, store, clock, counter):
    captured = sun_url(CLIENT_TAG, 7)
    assert reg.handle(tap(CLIENT_TAG, captured)).outcome is Outcome.ARRIVAL
    clock.advance(3600)
    replay = captured if counter == 7 else sun_url(CLIENT_TAG, counter)
    d = reg.handle(tap(CLIENT_TAG, replay))
    assert d.outcome is Outcome.REFUSED and d.refusal is Refusal.SUN_REPLAY
    assert "already used" in d.message and "report it" in d.message
    event = last_event(store)
    assert event["kind"] == "tap.refused" and event["data"]["reason"] == "sun_replay"
    assert event["data"]["sun"] == {"url": replay, "counter": counter, "verdict": "replay"}
    assert store.sun_counters() == {CLIENT_TAG: 7}
    assert [v.status for v in store.visits()] == ["open"]  # the replay changed no visit


def test_a_tampered_mac_is_refused(reg, store):
    url = sun_url(CLIENT_TAG, 9)
    tampered = url[:-1] + ("0" if url[-1] != "0" else "1")
    d = reg.handle(tap(CLIENT_TAG, tampered))
    assert d.refusal is Refusal.SUN_BAD_MAC
    assert last_event(store)["data"]["sun"]["verdict"] == "bad_mac"
    assert store.sun_counters() == {}


def test_a_copy_with_the_uid_and_static_signature_but_no_sun_is_refused(store, clock):
    give_keys(store, CLIENT_TAG)
    keys = (*GENUINE_NXP.items(), ("sim", SIM_PUBLIC_KEY_HEX))
    reg = Registrar(store, clock, Settings(personal_staff_ref="P-anna", trusted_tag_keys=keys))
    signature = sign_uid(bytes.fromhex(CLIENT_TAG)).hex().upper()
    # a "magic" tag: the real tag's UID and signature, a plain (non-SUN) URL
    d = reg.handle(tap(CLIENT_TAG, "https://nyckelfri.example/t/K-1", signature=signature))
    assert d.refusal is Refusal.SUN_MISSING
    # and with no NDEF at all
    assert reg.handle(tap(CLIENT_TAG, signature=signature)).refusal is Refusal.SUN_MISSING


def test_a_url_naming_another_tag_is_refused(reg, store):
    # the right tag's keys, but PICC data naming another UID (a URL moved to a copy)
    url = sun_url(CLIENT_TAG, 5, picc_uid=OTHER_CLIENT_TAG)
    assert reg.handle(tap(CLIENT_TAG, url)).refusal is Refusal.SUN_UID_MISMATCH
    # another tag's genuine URL on a copy carrying this UID: its MAC is of other keys
    other = sun_url(OTHER_CLIENT_TAG, 5)
    assert reg.handle(tap(CLIENT_TAG, other)).refusal is Refusal.SUN_BAD_MAC


def test_counters_survive_a_restart_and_a_key_pull(tmp_path, clock):
    path = tmp_path / "data"
    captured = sun_url(CLIENT_TAG, 40)
    with Store.in_dir(path) as store:
        store.import_reference(REFERENCE, "2026-11-30T07:00:00+00:00")
        give_keys(store, CLIENT_TAG)
        reg = Registrar(store, clock, Settings(personal_staff_ref="P-anna"))
        assert reg.handle(tap(CLIENT_TAG, captured)).outcome is Outcome.ARRIVAL
    with Store.in_dir(path) as store:
        give_keys(store, CLIENT_TAG)  # a later pull replaces the keys, never the counters
        assert store.sun_counters() == {CLIENT_TAG: 40}
        reg = Registrar(store, clock, Settings(personal_staff_ref="P-anna"))
        clock.advance(3600)
        assert reg.handle(tap(CLIENT_TAG, captured)).refusal is Refusal.SUN_REPLAY
        assert reg.handle(tap(CLIENT_TAG, sun_url(CLIENT_TAG, 41))).outcome is Outcome.DEPARTURE


def test_policy_sun_required_refuses_tags_without_sun(store, clock):
    give_keys(store, CLIENT_TAG, policy=TagPolicy.SUN_REQUIRED)
    reg = Registrar(store, clock, Settings(personal_staff_ref="P-anna"))
    assert reg.policy() is TagPolicy.SUN_REQUIRED
    d = reg.handle(tap(OTHER_CLIENT_TAG, "https://nyckelfri.example/t/K-2"))
    assert d.refusal is Refusal.NOT_SECURED and d.client_ref == "K-2"
    assert "NTAG 424 DNA" in d.message
    assert reg.handle(tap(CLIENT_TAG, sun_url(CLIENT_TAG, 1))).outcome is Outcome.ARRIVAL


def test_policy_signature_needs_a_genuine_signature_on_other_tags(store, clock):
    give_keys(store, CLIENT_TAG, policy=TagPolicy.SIGNATURE)
    keys = (*GENUINE_NXP.items(), ("sim", SIM_PUBLIC_KEY_HEX))
    reg = Registrar(store, clock, Settings(personal_staff_ref="P-anna", trusted_tag_keys=keys))
    assert reg.handle(tap(OTHER_CLIENT_TAG)).refusal is Refusal.NOT_GENUINE
    zero = reg.handle(tap(OTHER_CLIENT_TAG, signature="00" * 32))
    assert zero.refusal is Refusal.NOT_GENUINE
    signed = sign_uid(bytes.fromhex(OTHER_CLIENT_TAG)).hex().upper()
    assert reg.handle(tap(OTHER_CLIENT_TAG, signature=signed)).outcome is Outcome.ARRIVAL


def test_uid_only_still_checks_sun_tags(store, clock):
    give_keys(store, CLIENT_TAG, policy=TagPolicy.UID_ONLY)
    reg = Registrar(store, clock, Settings(personal_staff_ref="P-anna"))
    assert reg.handle(tap(OTHER_CLIENT_TAG)).outcome is Outcome.ARRIVAL
    assert reg.handle(tap(CLIENT_TAG, "https://x.example/t?e=00&c=00")).refusal is (
        Refusal.SUN_BAD_MAC)
    assert reg.handle(tap(CLIENT_TAG, "https://x.example/t/K-1")).refusal is (
        Refusal.SUN_MISSING)


def test_policy_comes_from_config_then_centre_then_the_legacy_switch(store, clock):
    assert Registrar(store, clock, Settings()).policy() is TagPolicy.UID_ONLY
    legacy = Registrar(store, clock, Settings(require_genuine_tags=True))
    assert legacy.policy() is TagPolicy.SIGNATURE
    give_keys(store, CLIENT_TAG, policy=TagPolicy.SUN_REQUIRED)
    assert legacy.policy() is TagPolicy.SUN_REQUIRED
    configured = Registrar(store, clock, Settings(tag_policy=TagPolicy.UID_ONLY))
    assert configured.policy() is TagPolicy.UID_ONLY
    store.replace_tag_keys("from-a-newer-centre", [])
    assert legacy.policy() is TagPolicy.SUN_REQUIRED  # unknown: the strictest


def test_badges_sign_in_under_sun_required_only_with_a_signature(store, clock):
    give_keys(store, CLIENT_TAG, policy=TagPolicy.SUN_REQUIRED)
    keys = (*GENUINE_NXP.items(), ("sim", SIM_PUBLIC_KEY_HEX))
    reg = Registrar(store, clock, Settings(trusted_tag_keys=keys))
    assert reg.handle(tap(BADGE_ANNA)).refusal is Refusal.NOT_GENUINE
    signed = sign_uid(bytes.fromhex(BADGE_ANNA)).hex().upper()
    assert reg.handle(tap(BADGE_ANNA, signature=signed)).outcome is Outcome.SIGNED_IN
    assert reg.handle(tap(CLIENT_TAG, sun_url(CLIENT_TAG, 2))).outcome is Outcome.ARRIVAL
