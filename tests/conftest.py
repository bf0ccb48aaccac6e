"""Shared fixtures: a real anvil per test module, funded throwaway keys, a deployed ledger."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from provanchor.chain.client import LedgerClient
from provanchor.home import Home
from provanchor.localnet import lifecycle
from provanchor.localnet.processes import AnvilService


@pytest.fixture(scope="module")
def net_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Home]:
    """A whole local network (anvil, IPFS daemon, ledger with one dev governor), private to the test module."""
    home = Home(tmp_path_factory.mktemp("net"))
    lifecycle.up(home)
    try:
        yield home
    finally:
        lifecycle.down(home)


@pytest.fixture(scope="module")
def anvil_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real anvil on a free port, private to the test module."""
    home: Path = tmp_path_factory.mktemp("anvil-home")
    service = AnvilService(home)
    url = service.start()
    try:
        yield url
    finally:
        service.stop()


@pytest.fixture(scope="module")
def fund(anvil_url: str) -> Callable[[LocalAccount], LocalAccount]:
    w3 = Web3(Web3.HTTPProvider(anvil_url))

    def _fund(account: LocalAccount) -> LocalAccount:
        w3.provider.make_request("anvil_setBalance", [account.address, hex(10**24)])  # type: ignore[arg-type]
        return account

    return _fund


@pytest.fixture(scope="module")
def new_account(fund: Callable[[LocalAccount], LocalAccount]) -> Callable[[], LocalAccount]:
    return lambda: fund(Account.create())


@pytest.fixture(scope="module")
def deploy(
    anvil_url: str, new_account: Callable[[], LocalAccount]
) -> Callable[..., tuple[LedgerClient, list[LocalAccount]]]:
    """Deploy a fresh ledger with `n` governors and quorum `m`; returns the client of governor 0."""

    def _deploy(n: int = 1, m: int = 1) -> tuple[LedgerClient, list[LocalAccount]]:
        governors = [new_account() for _ in range(n)]
        client, _ = LedgerClient.deploy(anvil_url, governors[0], [g.address for g in governors], m)
        return client, governors

    return _deploy


@pytest.fixture(scope="module")
def approved_agent(
    deploy: Callable[..., tuple[LedgerClient, list[LocalAccount]]], new_account: Callable[[], LocalAccount]
) -> Callable[[], tuple[LedgerClient, LocalAccount]]:
    """A fresh 1-of-1 ledger with one approved agent; returns the agent's client."""

    def _make() -> tuple[LedgerClient, LocalAccount]:
        client, _ = deploy(1, 1)
        agent = new_account()
        assert client.propose_add_agent(agent.address, "agent").executed
        return client.with_account(agent), agent

    return _make
