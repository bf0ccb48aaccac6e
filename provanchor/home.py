"""The data directory: where a node's chain state, IPFS repo, keys and descriptor live.

Chosen by `--home`, else `$PROVANCHOR_HOME`, else `~/.provanchor`. Every path
provanchor writes is derived here, so the layout is documented in one place.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Home:
    root: Path

    @classmethod
    def resolve(cls, explicit: str | os.PathLike[str] | None = None) -> Home:
        chosen = explicit or os.environ.get("PROVANCHOR_HOME") or Path.home() / ".provanchor"
        return cls(Path(chosen).expanduser().absolute())

    @property
    def network_file(self) -> Path:
        return self.root / "network.json"

    @property
    def keys_dir(self) -> Path:
        return self.root / "keys"

    @property
    def governor_keys_file(self) -> Path:
        return self.keys_dir / "governors.json"

    @property
    def chain_dir(self) -> Path:
        return self.root / "chain"

    @property
    def ipfs_dir(self) -> Path:
        return self.root / "ipfs"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"
