"""Keystores: provanchor's own v3 decryption (fast to import) reads exactly what eth_account writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account import Account

from provanchor.errors import KeystoreError
from provanchor.identity import decrypt_keystore, unlock, unlock_key

KEY = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
ADDRESS = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"  # eth_account's documented example key


@pytest.mark.parametrize("kdf", ["scrypt", "pbkdf2"])
def test_reads_what_eth_account_writes(tmp_path: Path, kdf: str) -> None:
    path = tmp_path / "key.json"
    path.write_text(json.dumps(Account.encrypt(KEY, "correct horse", kdf=kdf)))
    unlocked = unlock_key(path, "correct horse")
    assert unlocked.key == KEY and unlocked.address == ADDRESS
    assert unlock(path, "correct horse").address == ADDRESS == Account.from_key(KEY).address


def test_wrong_password_and_damaged_files_are_keystore_errors(tmp_path: Path) -> None:
    encrypted = Account.encrypt(KEY, "right", kdf="pbkdf2")
    path = tmp_path / "key.json"
    path.write_text(json.dumps(encrypted))
    with pytest.raises(KeystoreError, match="wrong password"):
        unlock_key(path, "wrong")
    assert decrypt_keystore(encrypted, "wrong") is None
    lying = {**encrypted, "address": "11" * 20}
    path.write_text(json.dumps(lying))
    with pytest.raises(KeystoreError, match="names address"):
        unlock_key(path, "right")
    for broken in ({**encrypted, "version": 2}, {**encrypted, "crypto": {"cipher": "aes-256-gcm"}}, {"version": 3}):
        path.write_text(json.dumps(broken))
        with pytest.raises(KeystoreError, match="not a valid V3 keystore"):
            unlock_key(path, "right")
    path.write_text("{not json")
    with pytest.raises(KeystoreError, match="unreadable"):
        unlock_key(path, "right")
    with pytest.raises(KeystoreError, match="does not exist"):
        unlock_key(tmp_path / "absent.json", "right")
