"""The central store's errors: one root, each message says what to do.

The HTTP API maps them to answers (``Unauthorized`` -> 401, ``Forbidden`` -> 403,
``DeviceExists`` -> 409, ``UnknownDevice``/``UnknownReference`` -> 404,
``ReferenceDataError``/``InvalidClockSample`` -> 422, ``DatabaseUnavailable`` -> 503
with a retry hint), the CLI maps them to exit codes. ``CentralError`` itself is
raised for input the caller must correct (a device name or role the centre does not
accept).
"""

from __future__ import annotations

from routine import reference


class CentralError(Exception):
    """Root of everything the central store raises on purpose."""


class Unauthorized(CentralError):
    """No token, or a token the centre never issued."""


class Forbidden(CentralError):
    """A token the centre knows but no longer accepts (the device was revoked)."""


class DeviceExists(CentralError):
    """A device of that name is already enrolled (or was, and was revoked)."""


class UnknownDevice(CentralError):
    """No device of that name is enrolled."""


class ReferenceDataError(CentralError, reference.ReferenceDataError):
    """Reference data that does not validate (:mod:`routine.reference`); nothing was changed.

    Also a :class:`routine.reference.ReferenceDataError` (a ``ValueError``), so either
    ``except`` clause catches it.
    """


class UnstorableReference(ReferenceDataError):
    """Reference data the databases cannot hold as sent (NUL, lone surrogates, NaN,
    deep nesting: :mod:`central.storable`); nothing was changed."""


class InvalidClockSample(CentralError):
    """A pushed clock sample the store cannot keep (see :mod:`central.storable`);
    nothing of the batch was stored."""


class UnknownReference(CentralError):
    """No live reference record of that kind and key."""


class DatabaseUnavailable(CentralError):
    """The database cannot be reached or used right now (or its schema is not current).

    Worth retrying when caused by a connection failure or lock contention; the
    message names the database (never its password) and what to check.
    """
