"""Every way finding, reading or proving a lock can fail, each with what to do about it.

One root, :class:`LockError`; each subclass carries the data a caller needs (the
serial, the measured RSSI, the GATT error code) and its message ends with advice a
fitter or an administrator can act on. Nothing here imports bleak: the centre
and the profile codecs use these classes without a Bluetooth stack.

Failures raised while a lock was being read carry the readings made so far in
``verification`` (a :class:`drivers.ble.lock.Verification` with ``error`` set), so
the agent can record an attempt that failed half way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from drivers.ble.lock import Verification


class LockError(Exception):
    """Root of every error the BLE lock drivers and the lock profile raise."""

    advice: str = ""

    def __init__(self, message: str, advice: str = "") -> None:
        self.advice = advice or self.advice
        self.verification: Verification | None = None
        super().__init__(f"{message}. {self.advice}" if self.advice else message)


# --- the profile: payloads on the air --------------------------------------------------


class PayloadError(LockError):
    """A lock payload (advertisement, characteristic value) that does not decode."""

    advice = "The lock or the agent is faulty or of another make; see docs/lock-profile.md"

    def __init__(self, what: str, detail: str) -> None:
        self.what = what
        self.detail = detail
        super().__init__(f"Malformed {what}: {detail}")


class UnsupportedVersion(PayloadError):
    """A payload of a profile version this code does not know (newer firmware)."""

    advice = ("Update the agent (and the centre): this lock speaks a profile version "
              "it does not know")

    def __init__(self, what: str, version: int, known: tuple[int, ...]) -> None:
        self.version = version
        self.known = known
        super().__init__(what, f"profile version {version} (known: "
                               f"{', '.join(map(str, known))})")


# --- the radio -------------------------------------------------------------------------


class BluetoothUnavailable(LockError):
    """No usable Bluetooth stack on this machine (no D-Bus, no bluetoothd, radio off)."""

    def __init__(self, reason: str, advice: str) -> None:
        self.reason = reason
        super().__init__(f"Bluetooth is unavailable: {reason}", advice)


class LockNotFound(LockError):
    """No advertisement of the wanted lock arrived within the scan time."""

    advice = ("Stand at the door, check that the lock has batteries and wake it by "
              "turning the knob, then try again")

    def __init__(self, serial: str, seconds: float, detail: str = "") -> None:
        self.serial = serial
        self.seconds = seconds
        extra = f" ({detail})" if detail else ""
        super().__init__(f"Lock {serial} was not seen within {seconds:.1f} s{extra}")


class LockTooFar(LockError):
    """The lock answered, but too weakly for the fitter to be at its door."""

    advice = "Move to the door the lock is fitted on (within about a metre) and try again"

    def __init__(self, serial: str, rssi: int, threshold: int) -> None:
        self.serial = serial
        self.rssi = rssi
        self.threshold = threshold
        super().__init__(f"Lock {serial} is too far away: signal {rssi} dBm is below "
                         f"the {threshold} dBm proximity threshold")


class WrongLock(LockError):
    """The lock that answered reports another serial than the job names."""

    advice = "This is not the lock of this job: check the job's serial and the door"

    def __init__(self, expected: str, actual: str) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(f"Wrong lock: expected serial {expected}, the lock says {actual}")


# --- a session with the lock -----------------------------------------------------------


class LockConnectionFailed(LockError):
    """Connecting failed for a reason other than a timeout (aborted, no free slot)."""

    def __init__(self, serial: str, detail: str) -> None:
        self.serial = serial
        self.detail = detail
        super().__init__(f"Could not connect to lock {serial}: {detail}",
                         "Move closer and try again; if it persists restart Bluetooth "
                         "(sudo systemctl restart bluetooth) or use a USB Bluetooth dongle")


class GattFailure(LockError):
    """A characteristic is missing or the lock answered with an ATT error code."""

    advice = ("The lock's firmware does not implement the nyckelfri lock profile as "
              "expected; note the code and report the lock to the administrator")

    def __init__(self, serial: str, what: str, code: int | None, detail: str = "") -> None:
        self.serial = serial
        self.what = what
        self.code = code
        said = f"ATT error 0x{code:02X}" if code is not None else detail or "missing"
        if code is not None and detail:
            said += f" ({detail})"
        super().__init__(f"Lock {serial}: {what} failed: {said}")


class LockTimeout(LockError):
    """The lock stopped answering: connecting or a read/write took too long."""

    advice = ("Wake the lock (turn the knob), stay at the door and try again; replace "
              "the batteries if it keeps happening")

    def __init__(self, serial: str, what: str, seconds: float) -> None:
        self.serial = serial
        self.what = what
        self.seconds = seconds
        super().__init__(f"Lock {serial}: {what} took longer than {seconds:.1f} s")


class LockDisconnected(LockError):
    """The lock dropped the connection while it was being read."""

    advice = "Stay at the door and try again; replace the batteries if it keeps happening"

    def __init__(self, serial: str, what: str) -> None:
        self.serial = serial
        self.what = what
        super().__init__(f"Lock {serial} disconnected during {what}")
