"""Tests for EIP-712 record signatures: equivalence with eth_account, domain binding, refusals."""

from __future__ import annotations

import hashlib

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_keys.datatypes import PrivateKey
from eth_utils.crypto import keccak

from provanchor.errors import RecordError, SignatureError, UsageError
from provanchor.records.signing import (
    DOMAIN_TYPEHASH,
    RECORD_TYPE,
    RECORD_TYPEHASH,
    Eip712Domain,
    RecordSigner,
    recover_signer,
    sign_record_hash,
    signing_digest,
    verify_signature,
)

KEY = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
ADDRESS = Account.from_key(KEY).address
CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
DOMAIN = Eip712Domain(31337, CONTRACT)
RECORD_HASH = hashlib.sha256(b"a record").digest()
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def test_type_strings() -> None:
    assert RECORD_TYPE == "ProvenanceRecord(bytes32 recordHash)"
    assert keccak(text=RECORD_TYPE) == RECORD_TYPEHASH
    assert keccak(text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)") == (
        DOMAIN_TYPEHASH
    )


def test_digest_matches_eth_account() -> None:
    signable = encode_typed_data(full_message=DOMAIN.typed_data(RECORD_HASH))
    expected = Account.sign_message(signable, KEY)
    digest = signing_digest(DOMAIN, RECORD_HASH)
    assert digest == bytes(expected.message_hash)
    assert digest == keccak(b"\x19\x01" + signable.header + signable.body)
    assert DOMAIN.separator == signable.header


def test_signature_matches_eth_account_and_eth_keys() -> None:
    signature = sign_record_hash(KEY, DOMAIN, RECORD_HASH)
    signable = encode_typed_data(full_message=DOMAIN.typed_data(RECORD_HASH))
    assert signature == bytes(Account.sign_message(signable, KEY).signature)  # RFC 6979: deterministic
    digest = signing_digest(DOMAIN, RECORD_HASH)
    eth_keys_sig = PrivateKey(KEY).sign_msg_hash(digest).to_bytes()
    assert signature[:64] == eth_keys_sig[:64] and signature[64] == eth_keys_sig[64] + 27
    assert signature[64] in (27, 28)
    assert Account.recover_message(signable, signature=signature) == ADDRESS
    assert Account._recover_hash(digest, signature=signature) == ADDRESS
    assert recover_signer(DOMAIN, RECORD_HASH, signature) == ADDRESS
    assert verify_signature(DOMAIN, RECORD_HASH, signature, ADDRESS)
    assert verify_signature(DOMAIN, RECORD_HASH, signature, ADDRESS.lower())


def test_key_forms_and_signer_object() -> None:
    signer = RecordSigner(KEY, DOMAIN)
    assert signer.address == ADDRESS
    expected = signer.sign(RECORD_HASH)
    assert sign_record_hash("0x" + KEY.hex(), DOMAIN, RECORD_HASH) == expected
    assert sign_record_hash(KEY.hex(), DOMAIN, RECORD_HASH) == expected
    assert sign_record_hash(PrivateKey(KEY), DOMAIN, RECORD_HASH) == expected
    for bad in (b"short", "zz", bytes(32), N.to_bytes(32, "big")):
        with pytest.raises(UsageError):
            sign_record_hash(bad, DOMAIN, RECORD_HASH)


def test_many_record_hashes_recover() -> None:
    signer = RecordSigner(KEY, DOMAIN)
    for i in range(50):
        record_hash = hashlib.sha256(i.to_bytes(4, "big")).digest()
        signature = signer.sign(record_hash)
        assert recover_signer(DOMAIN, record_hash, signature) == ADDRESS


@pytest.mark.parametrize(
    "other",
    [
        Eip712Domain(1, CONTRACT),
        Eip712Domain(31338, CONTRACT),
        Eip712Domain(31337, "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"),
    ],
)
def test_domain_binding(other: Eip712Domain) -> None:
    signature = sign_record_hash(KEY, DOMAIN, RECORD_HASH)
    assert signing_digest(other, RECORD_HASH) != signing_digest(DOMAIN, RECORD_HASH)
    assert recover_signer(other, RECORD_HASH, signature) != ADDRESS
    assert not verify_signature(other, RECORD_HASH, signature, ADDRESS)


def test_other_record_hash_recovers_another_address() -> None:
    signature = sign_record_hash(KEY, DOMAIN, RECORD_HASH)
    other = hashlib.sha256(b"another record").digest()
    assert recover_signer(DOMAIN, other, signature) != ADDRESS
    assert not verify_signature(DOMAIN, other, signature, ADDRESS)


def _with(signature: bytes, r: int | None = None, s: int | None = None, v: int | None = None) -> bytes:
    r_bytes = signature[:32] if r is None else r.to_bytes(32, "big")
    s_bytes = signature[32:64] if s is None else s.to_bytes(32, "big")
    return r_bytes + s_bytes + bytes([signature[64] if v is None else v])


GOOD = sign_record_hash(KEY, DOMAIN, RECORD_HASH)
_S = int.from_bytes(GOOD[32:64], "big")


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param(b"", id="empty"),
        pytest.param(GOOD[:64], id="64-bytes"),
        pytest.param(GOOD + b"\x00", id="66-bytes"),
        pytest.param(_with(GOOD, v=0), id="v0"),
        pytest.param(_with(GOOD, v=1), id="v1"),
        pytest.param(_with(GOOD, v=29), id="v29"),
        pytest.param(_with(GOOD, r=0), id="r0"),
        pytest.param(_with(GOOD, s=0), id="s0"),
        pytest.param(_with(GOOD, r=N), id="r=n"),
        pytest.param(_with(GOOD, s=N - _S, v=55 - GOOD[64]), id="high-s"),
        pytest.param(_with(GOOD, r=5), id="r-not-on-curve"),
        pytest.param(GOOD.hex(), id="hex-string"),
    ],
)
def test_malformed_signatures(signature: bytes) -> None:
    with pytest.raises(SignatureError):
        recover_signer(DOMAIN, RECORD_HASH, signature)
    assert not verify_signature(DOMAIN, RECORD_HASH, signature, ADDRESS)


def test_high_s_twin_is_otherwise_valid() -> None:
    """The refused high-s twin really is the malleated form, accepted by plain ecrecover."""
    twin = _with(GOOD, s=N - _S, v=55 - GOOD[64])
    digest = signing_digest(DOMAIN, RECORD_HASH)
    assert Account._recover_hash(digest, signature=twin) == ADDRESS


def test_bad_record_hash_and_domain() -> None:
    with pytest.raises(RecordError):
        signing_digest(DOMAIN, b"short")
    with pytest.raises(RecordError):
        sign_record_hash(KEY, DOMAIN, RECORD_HASH.hex())  # type: ignore[arg-type]
    for chain_id in (0, -1, True, "1"):
        with pytest.raises(UsageError):
            Eip712Domain(chain_id, CONTRACT)  # type: ignore[arg-type]
    for contract in ("0x1234", "0x5fbDB2315678afecb367f032d93F642f64180aa3", 5):
        with pytest.raises(UsageError):
            Eip712Domain(1, contract)  # type: ignore[arg-type]
    assert Eip712Domain(1, CONTRACT.lower()).contract == CONTRACT
    assert Eip712Domain(1, CONTRACT.lower()) == Eip712Domain(1, CONTRACT)
    with pytest.raises(UsageError):
        verify_signature(DOMAIN, RECORD_HASH, GOOD, "not an address")
