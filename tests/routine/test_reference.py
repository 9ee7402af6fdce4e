"""routine.reference: the one definition of valid reference data, pure, shared by both stores."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import agent.store
import central.errors
from routine import reference
from routine.reference import (
    KEY_FIELDS,
    KINDS,
    LOCK_STATUSES,
    MAX_KEY_LENGTH,
    SECTIONS,
    Record,
    ReferenceDataError,
    normalise_key,
    normalise_uid,
    validate_record,
    validate_reference,
)

DOCUMENT = {
    "clients": [{"ref": " K-1 ", "display_name": "Karin", "lock_status": "installed"},
                {"ref": "K-2", "display_name": None}],
    "tags": [{"uid": "04:a1:b2:c3:d4:e5:f6", "client_ref": "K-1", "active": 0}],
    "staff": [{"badge_uid": "0a 0b 0c 0d", "staff_ref": "P-anna"}],
    "locks": [{"serial": "PH-1", "state": "pending"},
              {"serial": "PH-2", "client_ref": "K-1", "state": "installed"}],
}


def test_a_document_becomes_normalised_records_in_document_order():
    assert validate_reference(DOCUMENT) == [
        Record("client", "K-1", {"ref": "K-1", "display_name": "Karin",
                                 "lock_status": "installed"}),
        Record("client", "K-2", {"ref": "K-2", "display_name": "", "lock_status": "pending"}),
        Record("tag", "04A1B2C3D4E5F6", {"uid": "04A1B2C3D4E5F6", "client_ref": "K-1",
                                         "active": False}),
        Record("staff", "0A0B0C0D", {"badge_uid": "0A0B0C0D", "staff_ref": "P-anna",
                                     "display_name": "", "active": True}),
        Record("lock", "PH-1", {"serial": "PH-1", "client_ref": None, "state": "pending"}),
        Record("lock", "PH-2", {"serial": "PH-2", "client_ref": "K-1", "state": "installed"}),
    ]
    assert validate_reference({}) == []


def test_the_tables_agree():
    assert set(SECTIONS.values()) == set(KINDS) == set(KEY_FIELDS)
    assert LOCK_STATUSES == ("pending", "impossible", "installed", "none")


@pytest.mark.parametrize(("value", "uid"), [
    ("04a1b2c3", "04A1B2C3"),
    ("04:A1:B2:C3:D4:E5:F6", "04A1B2C3D4E5F6"),
    ("04 a1 b2 c3 d4 e5 f6 07 08 09", "04A1B2C3D4E5F6070809"),
])
def test_uids_are_upper_case_hex_without_separators(value, uid):
    assert normalise_uid(value, "here") == uid


@pytest.mark.parametrize(("value", "message"), [
    ("zz", "is not hex"),
    ("0102", "has 2 bytes; NFC-A UIDs have 4, 7 or 10"),
    ("0102030405", "has 5 bytes"),
    ("04-a1-b2-c3", "is not hex"),
    (None, "must be a hex string"),
    (0x04A1B2C3, "must be a hex string"),
    ("", "has 0 bytes"),
])
def test_uids_of_other_sizes_or_not_hex_are_refused(value, message):
    with pytest.raises(ReferenceDataError, match=message) as caught:
        normalise_uid(value, "tags[3]")
    assert str(caught.value).startswith("tags[3]: ")


@given(st.binary(min_size=4, max_size=4) | st.binary(min_size=7, max_size=7)
       | st.binary(min_size=10, max_size=10), st.sampled_from(["", ":", " "]),
       st.booleans())
def test_any_uid_of_4_7_10_bytes_normalises_to_its_hex(raw, separator, lower):
    text = separator.join(f"{b:02x}" if lower else f"{b:02X}" for b in raw)
    assert normalise_uid(text, "x") == raw.hex().upper()


@pytest.mark.parametrize(("data", "message"), [
    ([], "must be an object with clients, tags, staff, locks"),
    ({"doors": []}, r"unknown sections \['doors'\]; expected clients, tags, staff, locks"),
    ({"clients": {"ref": "K-1"}}, "clients must be a list of objects"),
    ({"clients": ["K-1"]}, r"clients\[0\]: must be an object"),
    ({"clients": [{"ref": "K-1", "lock_status": "open"}]}, "lock_status 'open' is not one of"),
    ({"clients": [{"display_name": "x"}]}, r"clients\[0\]: 'ref' is required"),
    ({"clients": [{"ref": "   "}]}, "'ref' is required and must be a non-empty string"),
    ({"clients": [{"ref": "K" * (MAX_KEY_LENGTH + 1)}]}, f"longer than {MAX_KEY_LENGTH}"),
    ({"clients": [{"ref": "K-1", "display_name": 7}]}, "'display_name' must be a string"),
    ({"tags": [{"uid": "04111111111111"}]}, "'client_ref' is required"),
    ({"tags": [{"uid": "04111111111111", "client_ref": "K", "active": "yes"}]},
     "'active' must be true or false"),
    ({"staff": [{"badge_uid": "0A0B0C0D", "staff_ref": "P"},
                {"badge_uid": "0a:0b:0c:0d", "staff_ref": "Q"}]},
     r"staff\[1\]: badge_uid 0A0B0C0D also in staff\[0\]; keep one of them"),
    ({"locks": [{"serial": "PH-2"}]}, "'state' is required"),
    ({"locks": [{"serial": "PH-2", "state": "pending", "client_ref": ""}]},
     "'client_ref' is required"),
])
def test_bad_documents_name_the_place_and_the_fix(data, message):
    with pytest.raises(ReferenceDataError, match=message):
        validate_reference(data)


def test_the_caller_chooses_the_sections_it_accepts():
    agent_sections = ("clients", "tags", "staff")
    with pytest.raises(ReferenceDataError, match=r"expected clients, tags, staff$"):
        validate_reference({"locks": []}, agent_sections)
    with pytest.raises(ReferenceDataError, match=r"object with clients, tags, staff$"):
        validate_reference(None, agent_sections)
    without_locks = {k: v for k, v in DOCUMENT.items() if k != "locks"}
    assert [r.kind for r in validate_reference(without_locks, agent_sections)] == [
        "client", "client", "tag", "staff"]


def test_one_record_and_its_key():
    assert validate_record("tag", {"uid": "04a1b2c3", "client_ref": "K-1"}, "tag x") == (
        "04A1B2C3", {"uid": "04A1B2C3", "client_ref": "K-1", "active": True})
    assert normalise_key("staff", "0a:0b:0c:0d") == "0A0B0C0D"
    assert normalise_key("client", "  K-1 ") == "K-1"
    with pytest.raises(ReferenceDataError, match=r"^tag zz: uid 'zz' is not hex"):
        normalise_key("tag", "zz")
    with pytest.raises(ReferenceDataError, match=r"^item 3: uid"):
        normalise_key("tag", "zz", "item 3")
    for call in (lambda: validate_record("door", {}, "x"), lambda: normalise_key("door", "D")):
        with pytest.raises(ReferenceDataError, match="unknown reference kind 'door'; one of "
                                                     "client, tag, staff, lock"):
            call()


def test_input_is_not_changed():
    document = {"tags": [{"uid": "04:a1:b2:c3", "client_ref": " K "}]}
    validate_reference(document)
    assert document == {"tags": [{"uid": "04:a1:b2:c3", "client_ref": " K "}]}


def test_one_error_class_that_both_stores_extend():
    assert issubclass(ReferenceDataError, ValueError)
    # Each store's own class stays what its callers catch, and is also the routine's.
    assert issubclass(agent.store.ReferenceDataError, agent.store.StoreError)
    assert issubclass(agent.store.ReferenceDataError, reference.ReferenceDataError)
    assert issubclass(central.errors.ReferenceDataError, central.errors.CentralError)
    assert issubclass(central.errors.ReferenceDataError, reference.ReferenceDataError)
