"""Web passwords and sessions at the centre (no browser), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from central.errors import UnknownDevice
from central.store import CentralStore
from central.web import accounts, sessions
from central.web.accounts import AccountError, check_password, set_password
from central.web.db import web_credentials, web_sessions
from tests.central.conftest import SteppingClock

GOOD = "en lång mening som lösenord"


@pytest.fixture
def store(central_store: CentralStore) -> CentralStore:
    central_store.add_device("handlaggare-1", "assessor", "bestallarenhet-1")
    central_store.add_device("agent-1", "device")
    central_store.add_device("borta", "provider", "hemtjanst-nord")
    central_store.revoke_device("borta")
    return central_store


def test_set_password_refuses_with_reasons(store: CentralStore) -> None:
    with pytest.raises(AccountError, match="at least 12 characters"):
        set_password(store, "handlaggare-1", "för-kort")
    with pytest.raises(UnknownDevice, match="no principal named 'ingen'"):
        set_password(store, "ingen", GOOD)
    with pytest.raises(AccountError, match="was revoked"):
        set_password(store, "borta", GOOD)
    with pytest.raises(AccountError, match="field agent signs in with its token"):
        set_password(store, "agent-1", GOOD)
    with store._read() as conn:
        assert conn.execute(sa.select(web_credentials)).all() == []


def test_password_is_kept_as_salted_scrypt_with_its_parameters(store: CentralStore) -> None:
    set_password(store, "handlaggare-1", GOOD)
    with store._read() as conn:
        stored = conn.execute(sa.select(web_credentials.c.password_hash)).scalar_one()
    scheme, n, r, p, salt, digest = stored.split("$")
    assert len(bytes.fromhex(digest)) == 32
    assert (scheme, n, r, p) == ("scrypt", str(2**14), "8", "1")
    assert len(bytes.fromhex(salt)) == 16 and GOOD not in stored
    assert accounts.hash_password(GOOD) != accounts.hash_password(GOOD)  # fresh salt
    principal = check_password(store, "handlaggare-1", GOOD)
    assert principal is not None and principal.role == "assessor"
    assert check_password(store, "handlaggare-1", GOOD + "x") is None
    assert check_password(store, "ingen", GOOD) is None
    # a new password replaces the old one and ends the principal's sessions
    token = sessions.start(store, principal)
    set_password(store, "handlaggare-1", GOOD + " till")
    assert check_password(store, "handlaggare-1", GOOD) is None
    assert sessions.find(store, token) is None


def test_sessions_keep_only_a_hash_and_end_when_idle(store: CentralStore,
                                                     central_clock: SteppingClock) -> None:
    set_password(store, "handlaggare-1", GOOD)
    principal = check_password(store, "handlaggare-1", GOOD)
    assert principal is not None
    token = sessions.start(store, principal)
    with store._read() as conn:
        [row] = conn.execute(sa.select(web_sessions)).all()
    assert row.token_hash == sessions.token_hash(token) and token not in row
    found = sessions.find(store, token)
    assert found is not None and found.principal.name == "handlaggare-1"
    assert sessions.find(store, token + "x") is None
    central_clock.advance((sessions.IDLE - timedelta(minutes=5)).total_seconds())
    assert sessions.find(store, token) is not None  # used: the idle expiry moves on
    central_clock.advance((sessions.IDLE + timedelta(minutes=1)).total_seconds())
    assert sessions.find(store, token) is None
    with store._read() as conn:
        assert conn.execute(sa.select(web_sessions)).all() == []


def test_sessions_end_at_the_longest_even_when_used(store: CentralStore,
                                                    central_clock: SteppingClock) -> None:
    set_password(store, "handlaggare-1", GOOD)
    principal = check_password(store, "handlaggare-1", GOOD)
    assert principal is not None
    token = sessions.start(store, principal)
    for _ in range(int(sessions.LONGEST / timedelta(hours=1)) - 1):
        central_clock.advance(3600)
        assert sessions.find(store, token) is not None
    central_clock.advance(3601)
    assert sessions.find(store, token) is None
