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

from eth_account import Account
from eth_account.signers.local import LocalAccount

from provanchor.errors import ConfigError, KeystoreError, UsageError
from provanchor.home import Home
from provanchor.network import write_json_atomic

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


def unlock(keystore: Path, password: str) -> LocalAccount:
    """Decrypt a keystore; wrong passwords and damaged files are KeystoreErrors."""
    try:
        encrypted = json.loads(keystore.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise KeystoreError(f"keystore {keystore} does not exist") from exc
    except (OSError, ValueError) as exc:
        raise KeystoreError(f"keystore {keystore} is unreadable: {exc}") from exc
    try:
        key = Account.decrypt(encrypted, password)
    except ValueError as exc:
        if "MAC mismatch" in str(exc):
            raise KeystoreError(f"wrong password for keystore {keystore}") from exc
        raise KeystoreError(f"keystore {keystore} is not a valid V3 keystore: {exc}") from exc
    except (KeyError, TypeError) as exc:
        raise KeystoreError(f"keystore {keystore} is not a valid V3 keystore") from exc
    account: LocalAccount = Account.from_key(key)
    return account
