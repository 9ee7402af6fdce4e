"""Provision an NTAG 424 DNA for SUN: URL template, SDM, five new keys; safe to rerun.

Everything goes through one ``transceive(apdu) -> response`` (nfcpy's
``Type4Tag.transceive`` on a real, ``udp`` or PN532 reader) with the commands of
:mod:`drivers.nfc.ntag424`. The steps, in this order:

1. select the NDEF application, GetVersion: an NTAG 424 DNA with the UID anticollision
   gave (else :class:`NotNtag424Error`);
2. AuthenticateEV2First with key 0: the current key, else the new one (a run that was
   cut after changing key 0); neither: :class:`TagKeysMismatch`, nothing changed;
3. WriteData of the NDEF file: the URL template ``url_base?e=<PICC data>&c=<MAC>``
   (:func:`~drivers.nfc.ntag424.sdm_url`);
4. ChangeFileSettings: free read, write and change with key 0, SDM with encrypted PICC
   data (SDMMetaRead key 2), SDMMAC (SDMFileRead key 1), the counter mirrored. Skipped
   when the file already has exactly these settings, because enabling SDM resets the
   read counter (NT4H2421Gx §9.3.1);
5. ChangeKey of keys 1-4 (new XOR old || KeyVer || CRC32 of new). A key a cut run already
   changed fails the CRC check (91 1E); it is then changed again with the new key as
   the old one;
6. ChangeKey of key 0 last (the key of the session: new key || KeyVer; ends the
   session), then AuthenticateEV2First with the new key 0 to prove it took;
7. read the NDEF file plainly, as a phone does: the first SUN URL, returned.

Every step is idempotent, so a run cut anywhere (tag pulled away, reader unplugged)
is finished by running it again with the same arguments: :class:`ProvisionInterrupted`
says which steps were done. Until then a tag whose keys 1 and 2 are half changed makes
URLs that verify with neither key set.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import nfc.clf
import nfc.tag

from drivers.nfc.base import NfcError
from drivers.nfc.ntag424 import (
    KEY_COUNT,
    KEY_LENGTH,
    NDEF_FILE,
    FileSettings,
    Ntag424,
    Ntag424AuthenticationError,
    Ntag424Error,
    Ntag424StatusError,
    SdmUrl,
    Transceive,
    Version,
    provisioned_settings,
    sdm_url,
)

log = logging.getLogger(__name__)
_T = TypeVar("_T")

KEY_APP_MASTER = 0  # authenticates everything here; changed last
KEY_SDM_FILE_READ = 1  # SDMMAC
KEY_SDM_META_READ = 2  # encrypted PICC data (UID and read counter)
OTHER_KEYS = (1, 2, 3, 4)
SW_INTEGRITY_ERROR = 0x911E  # ChangeKey: the CRC32 of the new key does not match
SW_AUTHENTICATION_DELAY = 0x91AD  # the tag slows authentications down after failures
NDEF_FILE_BYTES = 256

# What a reader raises when the tag does not answer (left the field, reader gone).
TRANSPORT_ERRORS: tuple[type[Exception], ...] = (
    nfc.tag.TagCommandError, nfc.clf.CommunicationError, OSError)

RERUN_ADVICE = ("Nothing is lost: hold the tag still on the reader and run the same "
                "provisioning again; it picks up where this run stopped")


# --- errors ------------------------------------------------------------------------------


class ProvisionError(NfcError):
    """Provisioning stopped; ``steps_done`` lists what the tag already did."""

    def __init__(self, message: str, steps_done: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.steps_done = steps_done


class NotNtag424Error(ProvisionError):
    """The tag is no NTAG 424 DNA (no NDEF application, no GetVersion, another product)."""


class TagKeysMismatch(ProvisionError):
    """The tag holds neither the current nor the new keys: nothing was changed."""


class ProvisionInterrupted(ProvisionError):
    """The tag stopped answering mid-way (pulled away); rerunning finishes the job."""


class ProvisionRefused(ProvisionError):
    """The tag refused a step, or what it did cannot be confirmed."""


# --- the steps ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Ntag424Identity:
    """What GetVersion told about the tag before anything was changed."""

    uid: bytes
    product: str
    version: Version


def identify_ntag424(transceive: Transceive, uid: bytes) -> Ntag424Identity:
    """Select the NDEF application and check GetVersion: an NTAG 424 DNA with ``uid``.

    Changes nothing on the tag. Raises :class:`NotNtag424Error`,
    :class:`ProvisionRefused` (another UID answers) or :class:`ProvisionInterrupted`.
    """
    run = _Run(Ntag424(transceive), uid, None)
    return run.guarded(run.identify)


def provision_ntag424(transceive: Transceive, uid: bytes, new_keys: list[bytes],
                      current_keys: list[bytes], url_base: str, *, key_version: int = 1,
                      random: Callable[[int], bytes] = os.urandom,
                      on_step: Callable[[str], None] | None = None) -> str:
    """Provision (or re-key) the NTAG 424 DNA ``uid`` and return the SUN URL it reads.

    ``new_keys`` and ``current_keys`` are the five AES keys (key numbers 0-4) to set and
    those the tag holds now (all zero on a factory tag); ``key_version`` (1-255) goes
    into ChangeKey's KeyVer. ``on_step(name)`` is called before each step that talks to
    the tag. Raises a :class:`ProvisionError`; every one of them leaves a tag that a
    rerun with the same arguments provisions.
    """
    _check_keys(new_keys, "new_keys")
    _check_keys(current_keys, "current_keys")
    if not 1 <= key_version <= 0xFF:
        raise ValueError(f"key_version must be 1-255 (ChangeKey's KeyVer), not {key_version}")
    template = sdm_url(url_base)  # ValueError for a URL that cannot be a template
    plan = _Plan(new_keys=[bytes(k) for k in new_keys],
                 current_keys=[bytes(k) for k in current_keys],
                 template=template, key_version=key_version)
    run = _Run(Ntag424(transceive, random=random), uid, plan, on_step)
    return run.guarded(run.provision)


def _check_keys(keys: list[bytes], name: str) -> None:
    if len(keys) != KEY_COUNT or any(len(k) != KEY_LENGTH for k in keys):
        raise ValueError(f"{name} must be {KEY_COUNT} keys of {KEY_LENGTH} bytes")


@dataclass(frozen=True)
class _Plan:
    new_keys: list[bytes]
    current_keys: list[bytes]
    template: SdmUrl
    key_version: int


class _Run:
    """One provisioning run: the steps, and what was done for the error messages."""

    def __init__(self, tag: Ntag424, uid: bytes, plan: _Plan | None,
                 on_step: Callable[[str], None] | None = None) -> None:
        self.tag = tag
        self.uid = bytes(uid)
        self.plan = plan
        self.on_step = on_step
        self.done: list[str] = []
        self.step = ""
        self.master: bytes | None = None  # the key 0 that authenticated this run

    def guarded(self, action: Callable[[], _T]) -> _T:
        """Run ``action``, turning what the tag or the reader raises into ProvisionErrors."""
        try:
            return action()
        except ProvisionError:
            raise
        except TRANSPORT_ERRORS as error:
            raise ProvisionInterrupted(
                f"tag {self.uid.hex().upper()} stopped answering during '{self.step}' "
                f"({error}); done before: {self._done_text()}. {RERUN_ADVICE}"
                + self._half_keyed(), tuple(self.done)) from error
        except Ntag424Error as error:
            raise ProvisionRefused(
                f"tag {self.uid.hex().upper()} refused '{self.step}': {error}; done before: "
                f"{self._done_text()}. Rerunning is safe; if it fails the same way the tag "
                "may be locked differently than nyckelfri provisions tags", tuple(self.done)
            ) from error

    def _begin(self, step: str) -> None:
        self.step = step
        log.debug("provisioning %s: %s", self.uid.hex().upper(), step)
        if self.on_step is not None:
            self.on_step(step)

    def _did(self, what: str) -> None:
        self.done.append(what)
        log.info("provisioning %s: %s", self.uid.hex().upper(), what)

    def _done_text(self) -> str:
        return ", ".join(self.done) if self.done else "nothing"

    def _half_keyed(self) -> str:
        changed = [d for d in self.done if d.startswith("key ")]
        if not changed:
            return ""
        return (f" Until then the tag's URLs verify with neither key set ({', '.join(changed)}"
                " already changed).")

    # steps

    def identify(self) -> Ntag424Identity:
        self._begin("select the NDEF application")
        try:
            self.tag.select_application()
            self._begin("GetVersion")
            version = self.tag.get_version()
        except Ntag424StatusError as error:
            raise NotNtag424Error(
                f"tag {self.uid.hex().upper()} is not an NTAG 424 DNA ({self.step}: "
                f"{error}); nyckelfri provisions NTAG 424 DNA tags only") from error
        if not version.is_ntag424:
            raise NotNtag424Error(
                f"tag {self.uid.hex().upper()} is not an NTAG 424 DNA (GetVersion: "
                f"{version.product}); nyckelfri provisions NTAG 424 DNA tags only")
        if version.uid != self.uid:
            raise ProvisionRefused(
                f"the reader selected UID {self.uid.hex().upper()} but the tag says it is "
                f"{version.uid.hex().upper()}: two tags in the field, or random ID is on; "
                "hold one nyckelfri tag to the reader")
        self._did(f"identified {version.product}")
        return Ntag424Identity(version.uid, version.product, version)

    def provision(self) -> str:
        self.identify()
        self.authenticate_master()
        self.write_template()
        self.file_settings()
        for key_no in OTHER_KEYS:
            self.change_key(key_no)
        self.change_master()
        return self.read_back()

    def _plan(self) -> _Plan:
        assert self.plan is not None
        return self.plan

    def authenticate_master(self) -> None:
        plan = self._plan()
        candidates = [("current", plan.current_keys[KEY_APP_MASTER]),
                      ("new", plan.new_keys[KEY_APP_MASTER])]
        if candidates[0][1] == candidates[1][1]:
            candidates = candidates[:1]
        for which, key in candidates:
            self._begin(f"authenticate with the {which} key 0")
            try:
                self.tag.authenticate(KEY_APP_MASTER, key)
            except Ntag424AuthenticationError:
                continue
            except Ntag424StatusError as error:
                if error.status == SW_AUTHENTICATION_DELAY:
                    raise ProvisionRefused(
                        "the tag delays authentications after too many failed ones "
                        f"({error}); leave it a minute, then run the provisioning again",
                        tuple(self.done)) from error
                raise
            self.master = key
            self._did(f"authenticated with the {which} key 0")
            return
        raise TagKeysMismatch(
            f"this tag's keys are not the ones the centre expects: neither the current key 0 "
            "nor the new one authenticates on tag "
            f"{self.uid.hex().upper()}. Nothing was changed; the tag reads as before. Check "
            "that this is the client's tag and that the centre holds its keys (a tag "
            "provisioned by another system must be reset by that system)", tuple(self.done))

    def _reauthenticate(self) -> None:
        assert self.master is not None
        self.tag.authenticate(KEY_APP_MASTER, self.master)

    def write_template(self) -> None:
        self._begin("write the NDEF URL template")
        self.tag.write_data(NDEF_FILE, 0, self._plan().template.ndef_file)
        self._did("URL template written")

    def file_settings(self) -> None:
        self._begin("GetFileSettings of the NDEF file")
        wanted = provisioned_settings(self._plan().template)
        present = self.tag.get_file_settings(NDEF_FILE)
        if FileSettings(present.comm_mode, present.access, present.sdm) == wanted:
            self._did("SDM settings already right")
            return
        self._begin("ChangeFileSettings: enable SDM")
        self.tag.change_file_settings(NDEF_FILE, wanted)
        self._did("SDM enabled")

    def change_key(self, key_no: int) -> None:
        plan = self._plan()
        new = plan.new_keys[key_no]
        # After a cut run that got as far as key 0, the other keys are most likely new.
        olds = [plan.current_keys[key_no], new]
        if self.master == plan.new_keys[KEY_APP_MASTER]:
            olds.reverse()
        if olds[0] == olds[1]:
            olds = olds[:1]
        for attempt, old in enumerate(olds):
            self._begin(f"change key {key_no}")
            if attempt:
                self._reauthenticate()  # the failed ChangeKey ended the session
            try:
                self.tag.change_key(key_no, new, old_key=old, version=plan.key_version)
            except Ntag424StatusError as error:
                if error.status != SW_INTEGRITY_ERROR:
                    raise
                continue
            self._did(f"key {key_no} changed")
            return
        raise TagKeysMismatch(
            f"this tag's keys are not the ones the centre expects: key {key_no} of tag "
            f"{self.uid.hex().upper()} is neither the current nor the new one; done before: "
            f"{self._done_text()}. Ask the centre which key version the tag holds",
            tuple(self.done))

    def change_master(self) -> None:
        plan = self._plan()
        new = plan.new_keys[KEY_APP_MASTER]
        if self.master != new:
            self._begin("change key 0")
            self.tag.change_key(KEY_APP_MASTER, new, version=plan.key_version)
            self._did("key 0 changed")
        self._begin("authenticate with the new key 0")
        try:
            self.tag.authenticate(KEY_APP_MASTER, new)
        except Ntag424AuthenticationError as error:
            raise ProvisionRefused(
                f"tag {self.uid.hex().upper()} took ChangeKey of key 0 but the new key does "
                f"not authenticate ({error}); done before: {self._done_text()}",
                tuple(self.done)) from error
        self._did("new key 0 confirmed")

    def read_back(self) -> str:
        self._begin("read the SUN URL as a phone does")
        url = self.tag.read_url()
        template = self._plan().template
        mac_at = template.url.rindex("c=")
        prefix = template.url[: template.url.rindex("e=", 0, mac_at) + 2]
        if not url.startswith(prefix) or len(url) != len(template.url) or url == template.url:
            raise ProvisionRefused(
                f"tag {self.uid.hex().upper()} reads {url!r}, not a SUN URL of "
                f"{template.url!r}: it does not mirror; done before: {self._done_text()}",
                tuple(self.done))
        self._did("SUN URL read back")
        return url

