"""Digital locks over Bluetooth LE: the open nyckelfri lock profile and its driver.

* ``drivers.ble.profile``: UUIDs, payload codecs, the proof MAC and
  ``verify_response`` (pure; the spec is docs/lock-profile.md).
* ``drivers.ble.errors``: ``LockError`` and its subclasses, each with advice.
* ``drivers.ble.lock``: ``LockDriver`` (bleak + bleak-retry-connector).

``profile`` and ``errors`` import no Bluetooth stack, and this package imports
nothing at import time, so verifying a recorded proof never loads bleak.
"""
