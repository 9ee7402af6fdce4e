"""The central store's errors: one root, each message says what to do.

Each error class carries what every caller answers with, so the HTTP API, the CLI and
the web pages cannot differ and none needs another's mapping: ``status`` (the HTTP
API's status: ``Unauthorized`` 401, ``Forbidden`` 403, ``DeviceExists`` 409,
``UnknownDevice``/``UnknownReference`` 404, ``ReferenceDataError``/``InvalidClockSample``
422, ``DatabaseUnavailable`` 503 with a retry hint), ``error`` (the problem's code),
``advice`` (what to do) and ``exit_code`` (the CLI's exit status: :data:`EXIT_REFUSED`,
:data:`EXIT_DATA` or :data:`EXIT_DATABASE`). ``CentralError`` itself is raised for input
the caller must correct (a device name or role the centre does not accept).
"""

from __future__ import annotations

from routine import reference

# The CLI's exit statuses (``nyckelfri-central``): 0 ok, 1 unexpected.
EXIT_USAGE = 2  # a command line to correct
EXIT_REFUSED = 4  # refused: by the routine, by the principal's role or unit, by the data
EXIT_DATA = 5  # data or input to correct: unknown record, bad reference data, ...
EXIT_DATABASE = 6  # the database cannot be reached or used now: retry


class CentralError(Exception):
    """Root of everything the central store raises on purpose."""

    status = 422
    error = "invalid_request"
    advice = "correct the request"
    exit_code = EXIT_DATA


class Unauthorized(CentralError):
    """No token, or a token the centre never issued."""

    status, error, exit_code = 401, "unauthorized", EXIT_REFUSED
    advice = ("send 'Authorization: Bearer TOKEN' with the token printed by "
              "'nyckelfri-central device add'")


class Forbidden(CentralError):
    """A token the centre knows but no longer accepts (the device was revoked)."""

    status, error, exit_code = 403, "forbidden", EXIT_REFUSED
    advice = "ask the centre's administrator for a valid token"


class DeviceExists(CentralError):
    """A device of that name is already enrolled (or was, and was revoked)."""

    status, error = 409, "device_exists"
    advice = "choose another name or revoke the old device"


class UnknownDevice(CentralError):
    """No device of that name is enrolled."""

    status, error = 404, "unknown_device"
    advice = "list the devices: 'nyckelfri-central device list'"


class ReferenceDataError(CentralError, reference.ReferenceDataError):
    """Reference data that does not validate (:mod:`routine.reference`); nothing was changed.

    Also a :class:`routine.reference.ReferenceDataError` (a ``ValueError``), so either
    ``except`` clause catches it.
    """

    error, advice = "invalid_reference", "correct the reference data; nothing was changed"


class UnstorableReference(ReferenceDataError):
    """Reference data the databases cannot hold as sent (NUL, lone surrogates, NaN,
    deep nesting: :mod:`central.storable`); nothing was changed."""

    advice = "send plain JSON data; nothing was changed"


class InvalidClockSample(CentralError):
    """A pushed clock sample the store cannot keep (see :mod:`central.storable`);
    nothing of the batch was stored."""

    advice = "send the clock sample as measured, or none"


class UnknownReference(CentralError):
    """No live reference record of that kind and key."""

    status, error = 404, "unknown_reference"
    advice = "list it: 'nyckelfri-central reference list'"


class DatabaseUnavailable(CentralError):
    """The database cannot be reached or used right now (or its schema is not current).

    Worth retrying when caused by a connection failure or lock contention; the
    message names the database (never its password) and what to check.
    """

    status, error, exit_code = 503, "database_unavailable", EXIT_DATABASE
    retry_after_s = 5
    advice = f"the centre's database is unreachable; retry in {retry_after_s} s"
