"""Shared fixtures: a real chain per test module, funded throwaway keys, a deployed ledger.

A test module runs on anvil. One that sets `CHAIN_ENGINES = ("anvil", "geth")`
runs once per engine: geth in dev mode seals a block every second, so what
anvil's instant mining hides (receipt waits, pending nonces, moving fees) is
exercised by the same tests.
"""

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
from provanchor.localnet.geth import GethService, fund_from_dev_account
from provanchor.localnet.processes import AnvilService


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    engines = getattr(metafunc.module, "CHAIN_ENGINES", None)
    if engines and "chain_engine" in metafunc.fixturenames:
        metafunc.parametrize("chain_engine", engines, indirect=True, scope="module")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On geth, a module's GETH_TESTS (when it names them) are its representative subset.

    Every geth transaction waits for a 1 s block, so whole modules would add minutes; README
    ("Tests") lists the subsets. An entry names a test, or one parameter of it as
    ``test_name[param]`` (the engine left out of the brackets).
    """
    kept, dropped = [], []
    for item in items:
        subset = getattr(getattr(item, "module", None), "GETH_TESTS", None)
        callspec = getattr(item, "callspec", None)
        on_geth = callspec is not None and callspec.params.get("chain_engine") == "geth"
        name = getattr(item, "originalname", item.name)
        chosen = subset is not None and (name in subset or item.name.replace("[geth-", "[") in subset)
        (dropped if on_geth and subset is not None and not chosen else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="module")
def chain_engine(request: pytest.FixtureRequest) -> str:
    """The local chain's engine: anvil, unless the module asks for each of CHAIN_ENGINES."""
    return str(getattr(request, "param", "anvil"))


@pytest.fixture(scope="module")
def net_home(tmp_path_factory: pytest.TempPathFactory, chain_engine: str) -> Iterator[Home]:
    """A whole local network (chain, IPFS daemon, ledger with one dev governor), private to the test module."""
    home = Home(tmp_path_factory.mktemp(f"net-{chain_engine}"))
    lifecycle.up(home, chain=chain_engine)
    try:
        yield home
    finally:
        lifecycle.down(home)


@pytest.fixture(scope="module")
def chain_service(net_home: Home, chain_engine: str) -> AnvilService | GethService:
    """The running chain of `net_home`, to stop and start it (outage tests)."""
    return GethService(net_home.root) if chain_engine == "geth" else AnvilService(net_home.root)


@pytest.fixture(scope="module")
def anvil_url(tmp_path_factory: pytest.TempPathFactory, chain_engine: str) -> Iterator[str]:
    """A real chain on a free port, private to the test module (anvil, or geth for geth runs)."""
    home: Path = tmp_path_factory.mktemp(f"{chain_engine}-home")
    service = GethService(home) if chain_engine == "geth" else AnvilService(home)
    url = service.start()
    try:
        yield url
    finally:
        service.stop()


@pytest.fixture(scope="module")
def fund(anvil_url: str, chain_engine: str) -> Callable[[LocalAccount], LocalAccount]:
    w3 = Web3(Web3.HTTPProvider(anvil_url))

    def _fund(account: LocalAccount) -> LocalAccount:
        if chain_engine == "geth":
            fund_from_dev_account(anvil_url, account.address, 10**24)
        else:
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
