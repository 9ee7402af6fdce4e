"""NTAG21x originality signatures: is this a genuine NXP chip?

``READ_SIG`` returns 32 bytes r||s, an ECDSA signature over curve secp128r1 on
the raw 7-byte UID (no hash), made with NXP's key. A valid signature proves a
genuine NXP chip; it does not prove the tag was not copied (the signature is
static and can be replayed onto a "magic" tag with the same UID). It stops the
cheap attack: a blank Chinese clone or a phone emulating the UID.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping

import ecdsa
from ecdsa.util import sigdecode_string

log = logging.getLogger(__name__)

# NXP's public key for NTAG21x originality signatures (NXP AN11350).
NXP_NTAG21X_PUBLIC_KEY_HEX = "04494E1A386D3D3CFE3DC10E5DE68A499B1C202DB5B132393E89ED19FE5BE8BC61"
GENUINE_NXP = {"nxp": NXP_NTAG21X_PUBLIC_KEY_HEX}


@functools.lru_cache(maxsize=16)
def _key(public_hex: str) -> ecdsa.VerifyingKey:
    return ecdsa.VerifyingKey.from_string(bytes.fromhex(public_hex), curve=ecdsa.SECP128r1)


@functools.lru_cache(maxsize=4096)
def _verifies(public_hex: str, uid_hex: str, signature_hex: str) -> bool:
    try:
        return bool(_key(public_hex).verify_digest(
            bytes.fromhex(signature_hex), bytes.fromhex(uid_hex),
            sigdecode=sigdecode_string, allow_truncate=True,
        ))
    except (ecdsa.BadSignatureError, ecdsa.BadDigestError, ValueError, AssertionError):
        return False


def signer(uid_hex: str, signature_hex: str | None,
           trusted: Mapping[str, str] = GENUINE_NXP) -> str | None:
    """The name of the trusted key that signed this UID, or None (absent or forged)."""
    if not signature_hex:
        return None
    for name, public_hex in trusted.items():
        if _verifies(public_hex, uid_hex, signature_hex):
            return name
    return None
