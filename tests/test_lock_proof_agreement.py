"""The lock's side (drivers.ble.profile) and the centre's side (sync.protocol) of the
lock proof are written apart; they must agree on every input."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from drivers.ble.profile import BindingState, compute_mac, encode_response
from sync.protocol import verify_lock_proof

refs = st.from_regex(r"[A-Z]{1,3}-[0-9]{1,6}", fullmatch=True)


@given(secret=st.binary(min_size=16, max_size=16), nonce=st.binary(min_size=16, max_size=16),
       serial=st.from_regex(r"[A-Z0-9]{4,12}", fullmatch=True), bound=st.booleans(),
       counter=st.integers(0, 2**32 - 1), client=refs)
def test_the_centre_accepts_exactly_what_the_lock_proves(secret, nonce, serial, bound, counter,
                                                          client):
    binding = BindingState(bound=bound, counter=counter)
    response = encode_response(compute_mac(secret, nonce, serial, binding, client))
    assert verify_lock_proof(secret, nonce, serial, bound, counter, client, response)
    other = bytes([secret[0] ^ 1]) + secret[1:]
    assert not verify_lock_proof(other, nonce, serial, bound, counter, client, response)
    assert not verify_lock_proof(secret, nonce, serial, bound, counter, client + "9", response)
    assert not verify_lock_proof(secret, nonce, serial, not bound, counter, client, response)
