"""geth in dev mode as the local chain: a second EVM engine beside anvil, with real block times.

anvil mines a block per transaction, at once; a production chain (Besu QBFT,
geth) seals blocks on a clock. Running the ledger on geth's dev mode with a
block period makes every client wait for real blocks, so what instant mining
hides (receipt waits, nonces of transactions pending together, fees that move
with the base fee) is exercised.

Flags and why:

* ``--dev --dev.period 1``: a single-node proof-of-authority chain (chain id
  1337) with a pre-funded, unlocked developer account, sealing a block every
  second whether or not there are transactions.
* ``--datadir home/chain-geth``: the chain, and the developer key, persist
  across restarts (geth reopens an existing dev chain).
* ``--http`` on loopback with only ``eth,net,web3``; no IPC, no WebSocket,
  ``--nodiscover --maxpeers 0``, and the p2p and engine-API ports are picked
  free, so several networks can run on one machine.

Funding is an ordinary transfer from the developer account (`fund`): nothing
outside dev funding uses a method another EVM client lacks.
"""

from __future__ import annotations

import http.client
import json
import time
from pathlib import Path
from typing import Any

from provanchor.errors import ChainUnavailable, ConfigError, DaemonStartError
from provanchor.localnet.processes import ManagedDaemon, post_json, read_json
from provanchor.localnet.tools import LOOPBACK, Host, find_geth, free_port, port_is_free

__all__ = ["GETH_CHAIN_ID", "GethService", "fund_from_dev_account", "rpc_call"]

GETH_CHAIN_ID = 1337
GETH_BLOCK_PERIOD = 1


def rpc_call(url: str, method: str, params: list[Any], timeout: float = 10.0) -> Any:
    """One JSON-RPC call; ChainUnavailable when the node does not answer, ConfigError when it refuses."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    try:
        reply = post_json(url, body, timeout)
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise ChainUnavailable(f"chain RPC at {url} does not answer {method}") from exc
    if not isinstance(reply, dict) or "error" in reply:
        message = reply.get("error", {}).get("message") if isinstance(reply, dict) else reply
        raise ConfigError(f"chain RPC at {url} refused {method}: {message}")
    return reply["result"]


def fund_from_dev_account(url: str, address: str, wei: int, timeout: float = 60.0) -> None:
    """Send `wei` from geth's unlocked developer account to `address`, and wait for the receipt."""
    accounts = rpc_call(url, "eth_accounts", [])
    if not accounts:
        raise ConfigError(f"the chain at {url} has no unlocked developer account: is geth running with --dev?")
    tx = rpc_call(url, "eth_sendTransaction", [{"from": accounts[0], "to": address, "value": hex(wei)}])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        receipt = rpc_call(url, "eth_getTransactionReceipt", [tx])
        if receipt is not None:
            if int(receipt["status"], 16) != 1:
                raise ConfigError(f"funding {address} from the developer account failed (tx {tx})")
            return
        time.sleep(0.1)
    raise ChainUnavailable(f"funding {address}: no receipt for {tx} within {timeout:.0f} s")


class GethService(ManagedDaemon):
    """A persistent geth dev chain inside ``home`` (chain id 1337, a block every second)."""

    def __init__(self, home: Path, host: Host | None = None) -> None:
        super().__init__("geth", home, markers=("geth",), host=host)
        self.data_dir = self.home / "chain-geth"
        self.ports_file = self.data_dir / "ports.json"

    @property
    def rpc_url(self) -> str | None:
        port = self._previous_http_port() if self.is_running() else None
        return f"http://{self.host.address}:{port}" if port is not None else None

    def start(self, timeout: float = 60.0) -> str:
        """Start the chain (or find it running) and return its JSON-RPC URL."""
        with self._exclusive():
            url = self.rpc_url
            if url is not None:
                return url
            self._forget()
            self.data_dir.mkdir(parents=True, exist_ok=True)
            previous = self._previous_http_port()
            http = previous if previous is not None and port_is_free(previous) else free_port()
            p2p, auth = free_port(), free_port()
            argv = [
                str(find_geth()),
                "--dev", "--dev.period", str(GETH_BLOCK_PERIOD),
                "--datadir", str(self.data_dir),
                "--http", "--http.addr", self.host.address, "--http.port", str(http), "--http.api", "eth,net,web3",
                "--authrpc.addr", LOOPBACK, "--authrpc.port", str(auth),
                "--port", str(p2p), "--nodiscover", "--maxpeers", "0", "--ipcdisable",
                "--cache", "64", "--verbosity", "2",
            ]  # fmt: skip
            self.ports_file.write_text(json.dumps({"http": http}) + "\n")
            pid = self._spawn(argv)
            url = f"http://{self.host.address}:{http}"
            self._wait_ready(pid, lambda: self._mining(url), timeout)
            return url

    def _previous_http_port(self) -> int | None:
        port = read_json(self.ports_file).get("http")
        return port if isinstance(port, int) else None

    @staticmethod
    def _mining(url: str) -> bool:
        """Ready once it answers as the dev chain and has an unlocked developer account."""
        try:
            chain_id = int(rpc_call(url, "eth_chainId", [], timeout=1.0), 16)
            accounts = rpc_call(url, "eth_accounts", [], timeout=1.0)
        except (ChainUnavailable, ConfigError):
            return False
        if chain_id != GETH_CHAIN_ID:
            raise DaemonStartError(f"geth at {url} answers as chain {chain_id}, not the dev chain {GETH_CHAIN_ID}")
        return bool(accounts)
