"""What every service shares: the central store's transactions, units, policies, checks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import Connection

from central.cases.access import Units
from central.cases.errors import CaseError
from central.storable import bad_text
from central.store import CentralStore
from routine.keys import DEFAULT_POLICY, KeyPolicy

MAX_NOTE = 2000  # free text on steps, messages, key uses: a paragraph, not a file
MAX_KEY_NUMBER = 64  # key_sets.key_number


class Core:
    """The central store under the services and the municipality's settings.

    ``units`` names the alarm and night group; ``key_policy`` is the municipality's
    reading of what section 4 leaves open (:class:`routine.keys.KeyPolicy`);
    ``tag_when_no_lock_by_choice`` lets providers issue NFC tags to clients who chose to
    have no lock (lock status ``none``).
    """

    def __init__(self, central: CentralStore, *, units: Units | None = None,
                 key_policy: KeyPolicy = DEFAULT_POLICY,
                 tag_when_no_lock_by_choice: bool = False) -> None:
        self.central = central
        self.units = units or Units()
        self.key_policy = key_policy
        self.tag_when_no_lock_by_choice = tag_when_no_lock_by_choice

    # The central store's transactions (connection errors become DatabaseUnavailable).
    @contextmanager
    def write(self) -> Iterator[Connection]:
        with self.central._write() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.central._read() as conn:
            yield conn


class Service:
    """A service over the shared :class:`Core`."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.central = core.central
        self.units = core.units


def note(value: str | None) -> str | None:
    """A free-text note, checked (None or blank: none)."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_NOTE or bad_text(value):
        raise CaseError(f"a note is text of at most {MAX_NOTE} characters")
    return value.strip() or None


def key_number(value: str) -> str:
    """A key number as the register keeps it."""
    number = value.strip() if isinstance(value, str) else ""
    if not number or len(number) > MAX_KEY_NUMBER or bad_text(number):
        raise CaseError(f"key number {value!r} is not usable: 1-{MAX_KEY_NUMBER} characters")
    return number
