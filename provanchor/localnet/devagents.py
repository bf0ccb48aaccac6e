"""Agents on the local development network, in one call.

Tests, benchmarks and demos all need the same thing: a separate data
directory that points at the local network, an agent key in it, gas money,
and the dev governor's approval. On a real network each of those steps is
someone's decision; here they are one function.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from provanchor.chain.client import LedgerClient
from provanchor.errors import ConfigError
from provanchor.home import Home
from provanchor.identity import AgentIdentity, create_identity
from provanchor.localnet.devkeys import load_governor_keys
from provanchor.localnet.lifecycle import fund
from provanchor.network import load_network


def enroll_agent(
    net: Home, directory: Path, name: str, password: str, approve: bool = True
) -> tuple[Home, AgentIdentity]:
    """A new data directory for agent `name` on the local network in `net`, funded and (by default) approved.

    Approval is proposed by the first dev governor: it executes at once on a network with quorum 1.
    """
    home = Home(directory)
    home.root.mkdir(parents=True, exist_ok=True)
    shutil.copy(net.network_file, home.network_file)
    identity = create_identity(home, name, password)
    fund(home, identity.address)
    if approve:
        network = load_network(net)
        ledger = LedgerClient(network.rpc_url, network.contract, load_governor_keys(net)[0])
        if not ledger.propose_add_agent(identity.address, name).executed:
            raise ConfigError(f"approving {name} needs more governors' approvals on this network")
    return home, identity
