"""Agent identities: an Ethereum key in an encrypted keystore, and which one is configured.

The key never sits on disk in the clear: it lives in an eth-account V3
keystore (scrypt + AES-128-CTR), unlocked with a password from
`PROVANCHOR_PASSWORD`, a password file, or an interactive prompt. The data
directory's `agent.json` names the configured agent (name, address, keystore
path) so `provanchor record` and friends know whom to sign as.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from provanchor.errors import ConfigError, KeystoreError, UsageError
from provanchor.home import Home
from provanchor.network import write_json_atomic

if TYPE_CHECKING:  # eth_account costs 0.75 s to import: only what sends transactions pays for it
    from eth_account.signers.local import LocalAccount

PASSWORD_ENV = "PROVANCHOR_PASSWORD"


@dataclass(frozen=True)
class AgentIdentity:
    name: str
    address: str
    keystore: str

    @property
    def keystore_path(self) -> Path:
        return Path(self.keystore)


def agent_file(home: Home) -> Path:
    return home.root / "agent.json"


def default_keystore(home: Home, name: str) -> Path:
    return home.keys_dir / f"agent-{name}.json"


def read_password(password_file: str | None = None, confirm: bool = False) -> str:
    """The keystore password: --password-file, else $PROVANCHOR_PASSWORD, else a prompt."""
    if password_file is not None:
        try:
            return Path(password_file).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise KeystoreError(f"cannot read password file {password_file}: {exc.strerror}") from exc
    env = os.environ.get(PASSWORD_ENV)
    if env is not None:
        return env
    if not sys.stdin.isatty():
        raise KeystoreError(f"no password: set {PASSWORD_ENV} or pass --password-file")
    password = getpass.getpass("keystore password: ")
    if confirm and getpass.getpass("repeat password: ") != password:
        raise KeystoreError("the passwords differ")
    return password


def create_identity(
    home: Home, name: str, password: str, keystore: Path | None = None, replace: bool = False
) -> AgentIdentity:
    """Create a key, encrypt it to `keystore`, and make it the configured agent.

    An already configured agent is never replaced silently (its spool and key
    would be orphaned): `replace=True` says the operator means it.
    """
    if not name or len(name) > 128:
        raise UsageError("--name must be 1 to 128 characters")
    if agent_file(home).exists() and not replace:
        current = load_identity(home)
        raise UsageError(
            f"an agent is already configured here ({current.name}, {current.address}): pass --force to replace it"
        )
    if not password:
        raise KeystoreError("refusing an empty keystore password")
    path = (keystore or default_keystore(home, name)).expanduser().absolute()
    if path.exists():
        raise UsageError(f"keystore {path} already exists: choose another --keystore or --name")
    from eth_account import Account

    account = Account.create()
    encrypted = Account.encrypt(account.key, password)
    write_json_atomic(path, encrypted, mode=0o600)
    identity = AgentIdentity(name=name, address=account.address, keystore=str(path))
    write_json_atomic(agent_file(home), asdict(identity))
    return identity


def load_identity(home: Home) -> AgentIdentity:
    path = agent_file(home)
    if not path.exists():
        raise ConfigError(f"no agent configured in {home.root}: run `provanchor agent init --name NAME`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return AgentIdentity(name=str(data["name"]), address=str(data["address"]), keystore=str(data["keystore"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is unreadable: {exc}") from exc


@dataclass(frozen=True)
class UnlockedKey:
    """A decrypted agent key and its address: all that signing records needs.

    Sending transactions needs an eth_account `LocalAccount` (`local_account()`),
    built on demand because importing eth_account costs most of a second, which
    a short `provanchor run` or `record` should not pay.
    """

    key: bytes
    address: str

    def local_account(self) -> LocalAccount:
        from eth_account import Account

        account: LocalAccount = Account.from_key(self.key)
        return account


def unlock_key(keystore: Path, password: str) -> UnlockedKey:
    """Decrypt a Web3 Secret Storage v3 keystore (scrypt or pbkdf2, aes-128-ctr, Keccak MAC).

    The same format eth_account writes and reads (tests check both ways), done
    with pycryptodome's scrypt and AES and hashlib's PBKDF2. Wrong passwords and damaged
    files are KeystoreErrors; so is a keystore whose address is not its key's.
    """
    try:
        encrypted = json.loads(keystore.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise KeystoreError(f"keystore {keystore} does not exist") from exc
    except (OSError, ValueError) as exc:
        raise KeystoreError(f"keystore {keystore} is unreadable: {exc}") from exc
    try:
        key = decrypt_keystore(encrypted, password)
    except (KeyError, TypeError, ValueError) as exc:
        raise KeystoreError(f"keystore {keystore} is not a valid V3 keystore: {exc}") from exc
    if key is None:
        raise KeystoreError(f"wrong password for keystore {keystore}")
    from provanchor.records.signing import address_of_key

    address = address_of_key(key)
    stated = encrypted.get("address") if isinstance(encrypted, dict) else None
    if isinstance(stated, str) and stated.lower().removeprefix("0x") != address[2:].lower():
        raise KeystoreError(f"keystore {keystore} names address {stated}, but its key is {address}'s")
    return UnlockedKey(key, address)


def decrypt_keystore(encrypted: dict[str, object], password: str) -> bytes | None:
    """The private key of a v3 keystore, or None when the password is wrong (its MAC does not match)."""
    import hashlib
    import hmac

    import sha3
    from Crypto.Cipher import AES

    if encrypted.get("version") != 3:
        raise ValueError(f"version {encrypted.get('version')!r}, expected 3")
    crypto = encrypted.get("crypto", encrypted.get("Crypto"))
    if not isinstance(crypto, dict) or crypto.get("cipher") != "aes-128-ctr":
        raise ValueError("the cipher must be aes-128-ctr")
    params = crypto["kdfparams"]
    salt = bytes.fromhex(params["salt"])
    secret = password.encode("utf-8")
    if crypto["kdf"] == "scrypt":
        from Crypto.Protocol.KDF import scrypt  # measured: 15% faster than hashlib's (OpenSSL) here

        derived = bytes(scrypt(secret, salt, int(params["dklen"]), N=int(params["n"]), r=int(params["r"]),  # type: ignore[arg-type]
                               p=int(params["p"])))  # fmt: skip
    elif crypto["kdf"] == "pbkdf2":
        if params.get("prf") != "hmac-sha256":
            raise ValueError("pbkdf2 keystores must use hmac-sha256")
        derived = hashlib.pbkdf2_hmac("sha256", secret, salt, int(params["c"]), int(params["dklen"]))
    else:
        raise ValueError(f"unknown kdf {crypto['kdf']!r}")
    ciphertext = bytes.fromhex(crypto["ciphertext"])
    mac = sha3.keccak_256(derived[16:32] + ciphertext).digest()
    if not hmac.compare_digest(mac, bytes.fromhex(crypto["mac"])):
        return None
    iv = bytes.fromhex(crypto["cipherparams"]["iv"])
    cipher = AES.new(derived[:16], AES.MODE_CTR, initial_value=iv, nonce=b"")
    key = cipher.decrypt(ciphertext)
    if len(key) != 32:
        raise ValueError("the decrypted key is not 32 bytes")
    return key


def unlock(keystore: Path, password: str) -> LocalAccount:
    """Decrypt a keystore into an eth_account `LocalAccount` (for what sends transactions)."""
    return unlock_key(keystore, password).local_account()
