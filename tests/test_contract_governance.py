"""Governance of the ledger against a real anvil: quorum, approvals, windows, errors."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from provanchor.chain.client import Action, LedgerClient
from provanchor.chain.events import AgentAdded, ProposalApproved, ProposalCreated, ProposalExecuted
from provanchor.errors import ContractError

Deploy = Callable[..., tuple[LedgerClient, list[LocalAccount]]]


def test_two_of_three_quorum_activates_agent_only_on_second_approval(
    deploy: Deploy, new_account: Callable[[], LocalAccount]
) -> None:
    client, governors = deploy(3, 2)
    agent = Account.create().address
    outcome = client.propose_add_agent(agent, "host-a")
    assert (outcome.executed, outcome.approvals) == (False, 1)
    info = client.agent_info(agent)
    assert not info.active and not info.registered

    second = client.with_account(governors[1]).approve(outcome.proposal_id)
    assert (second.executed, second.approvals) == (True, 2)
    info = client.agent_info(agent)
    assert info.active and info.name == "host-a"
    assert info.approved_block == second.block
    assert [a.address for a in client.agents()] == [agent]

    # The same history, as typed events in chain order.
    history = client.governance_events()
    created, first, approved, added, executed = history[-5:]  # the effect is emitted before the execution
    assert isinstance(created, ProposalCreated) and created.proposal_id == outcome.proposal_id
    assert (created.action, created.target, created.name) == (Action.ADD_AGENT, agent.lower(), "host-a")
    assert isinstance(first, ProposalApproved) and first.approvals == 1
    assert first.governor == governors[0].address.lower()
    assert isinstance(approved, ProposalApproved) and approved.governor == governors[1].address.lower()
    assert isinstance(executed, ProposalExecuted) and executed.proposal_id == outcome.proposal_id
    assert isinstance(added, AgentAdded) and (added.agent, added.name) == (agent.lower(), "host-a")
    assert added.mined.block == second.block and added.mined.tx_hex == second.tx


def test_a_governor_cannot_approve_twice(deploy: Deploy) -> None:
    client, _ = deploy(3, 3)
    outcome = client.propose_add_agent(Account.create().address, "x")
    with pytest.raises(ContractError) as err:
        client.approve(outcome.proposal_id)
    assert err.value.name == "AlreadyApproved"
    assert client.proposal(outcome.proposal_id).approvals == 1


def test_non_governor_cannot_propose_or_approve(deploy: Deploy, new_account: Callable[[], LocalAccount]) -> None:
    client, _ = deploy(2, 2)
    outsider = client.with_account(new_account())
    with pytest.raises(ContractError) as err:
        outsider.propose_add_agent(Account.create().address, "x")
    assert err.value.name == "NotGovernor"
    outcome = client.propose_add_agent(Account.create().address, "y")
    with pytest.raises(ContractError) as err:
        outsider.approve(outcome.proposal_id)
    assert err.value.name == "NotGovernor"


def test_unknown_proposal_and_executed_proposal_are_refused(deploy: Deploy) -> None:
    client, governors = deploy(2, 1)
    with pytest.raises(ContractError) as err:
        client.approve(99)
    assert err.value.name == "UnknownProposal"
    done = client.propose_add_agent(Account.create().address, "z")
    assert done.executed
    with pytest.raises(ContractError) as err:
        client.with_account(governors[1]).approve(done.proposal_id)
    assert err.value.name == "ProposalAlreadyExecuted"


def test_quorum_bounds_and_change(deploy: Deploy) -> None:
    client, governors = deploy(3, 2)
    with pytest.raises(ContractError) as err:
        client.propose_set_quorum(4)
    assert err.value.name == "InvalidQuorum"
    assert err.value.args_by_name == {"quorum": 4, "governorCount": 3}
    outcome = client.propose_set_quorum(3)
    client.with_account(governors[2]).approve(outcome.proposal_id)
    assert client.quorum() == 3
    assert client.proposal(outcome.proposal_id).action == Action.SET_QUORUM


def test_deploy_refuses_quorum_above_governor_count(anvil_url: str, new_account: Callable[[], LocalAccount]) -> None:
    deployer = new_account()
    with pytest.raises(ContractError) as err:
        LedgerClient.deploy(anvil_url, deployer, [deployer.address], 2)
    assert err.value.name == "InvalidQuorum"


def test_governor_add_and_remove_and_stale_proposals(deploy: Deploy, new_account: Callable[[], LocalAccount]) -> None:
    client, governors = deploy(2, 2)
    newcomer = new_account()
    added = client.propose_add_governor(newcomer.address)
    client.with_account(governors[1]).approve(added.proposal_id)
    assert client.is_governor(newcomer.address)
    assert len(client.governors()) == 3

    pending = client.with_account(governors[1]).propose_add_agent(Account.create().address, "pending")
    removal = client.propose_remove_governor(governors[1].address)
    client.with_account(newcomer).approve(removal.proposal_id)
    assert not client.is_governor(governors[1].address)
    # The removed governor's approval must not count: the pending proposal is stale now.
    assert client.proposal(pending.proposal_id).stale
    with pytest.raises(ContractError) as err:
        client.approve(pending.proposal_id)
    assert err.value.name == "ProposalStale"


def test_cannot_remove_governor_below_quorum(deploy: Deploy) -> None:
    client, governors = deploy(2, 2)
    with pytest.raises(ContractError) as err:
        client.propose_remove_governor(governors[1].address)
    assert err.value.name == "InvalidQuorum"


def test_agent_window_and_registration_rules(deploy: Deploy) -> None:
    client, _ = deploy(1, 1)
    agent = Account.create().address
    added = client.propose_add_agent(agent, "a")
    with pytest.raises(ContractError) as err:
        client.propose_add_agent(agent, "again")
    assert err.value.name == "AgentAlreadyRegistered"
    with pytest.raises(ContractError) as err:
        client.propose_add_agent(Account.create().address, "")
    assert err.value.name == "EmptyName"
    revoked = client.propose_revoke_agent(agent)
    info = client.agent_info(agent)
    assert not info.active and info.revoked_block == revoked.block
    assert client.agent_active_at_block(agent, added.block)
    assert client.agent_active_at_block(agent, revoked.block - 1)
    assert not client.agent_active_at_block(agent, revoked.block)
    assert not client.agent_active_at_block(agent, added.block - 1)
    with pytest.raises(ContractError) as err:
        client.propose_revoke_agent(agent)
    assert err.value.name == "AgentNotActive"
    # A revoked key never returns.
    with pytest.raises(ContractError) as err:
        client.propose_add_agent(agent, "back")
    assert err.value.name == "AgentAlreadyRegistered"
