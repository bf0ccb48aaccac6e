"""`provanchor gov`: proposals and approvals among the consortium's governors."""

from __future__ import annotations

from typing import Any

import click

from provanchor.chain.client import AgentInfo, LedgerClient, ProposalInfo, ProposalOutcome
from provanchor.cli.context import app, emit_json, emit_table, iso_time, json_option, wide_option
from provanchor.localnet.devkeys import select_governor
from provanchor.network import load_network

as_option = click.option(
    "--as",
    "as_governor",
    default=None,
    metavar="ADDRESS_OR_INDEX",
    help="Act as this dev governor: an index (0 = first) or its address. Default: the first.",
)


def _client(ctx: click.Context, as_governor: str | None = None, signing: bool = True) -> LedgerClient:
    home = app(ctx).home
    descriptor = load_network(home)
    account = select_governor(home, as_governor) if signing else None
    client = LedgerClient(descriptor.rpc_url, descriptor.contract, account)
    client.ensure_deployed()
    return client


def _report(outcome: ProposalOutcome, as_json: bool, quorum: int) -> None:
    data = {
        "proposal_id": outcome.proposal_id,
        "executed": outcome.executed,
        "approvals": outcome.approvals,
        "quorum": quorum,
        "tx": outcome.tx,
        "block": outcome.block,
    }
    if as_json:
        emit_json(data)
    elif outcome.executed:
        click.echo(
            f"proposal {outcome.proposal_id}: executed ({outcome.approvals}/{quorum} approvals, tx {outcome.tx})"
        )
    else:
        click.echo(f"proposal {outcome.proposal_id}: pending, {outcome.approvals}/{quorum} approvals (tx {outcome.tx})")


@click.group()
def gov() -> None:
    """Governance: approve agents and governors by m-of-n quorum."""


@gov.group()
def propose() -> None:
    """Create a proposal (the proposer's approval counts toward the quorum)."""


@propose.command("add-agent")
@click.argument("address")
@click.option("--name", required=True, help="Human name of the agent (host, service...).")
@as_option
@json_option
@click.pass_context
def add_agent(ctx: click.Context, address: str, name: str, as_governor: str | None, as_json: bool) -> None:
    """Propose approving ADDRESS as a provenance agent."""
    client = _client(ctx, as_governor)
    _report(client.propose_add_agent(address, name), as_json, client.quorum())


@propose.command("revoke-agent")
@click.argument("address")
@as_option
@json_option
@click.pass_context
def revoke_agent(ctx: click.Context, address: str, as_governor: str | None, as_json: bool) -> None:
    """Propose closing ADDRESS's active window for good."""
    client = _client(ctx, as_governor)
    _report(client.propose_revoke_agent(address), as_json, client.quorum())


@propose.command("add-governor")
@click.argument("address")
@as_option
@json_option
@click.pass_context
def add_governor(ctx: click.Context, address: str, as_governor: str | None, as_json: bool) -> None:
    """Propose adding ADDRESS to the governors."""
    client = _client(ctx, as_governor)
    _report(client.propose_add_governor(address), as_json, client.quorum())


@propose.command("remove-governor")
@click.argument("address")
@as_option
@json_option
@click.pass_context
def remove_governor(ctx: click.Context, address: str, as_governor: str | None, as_json: bool) -> None:
    """Propose removing ADDRESS from the governors (pending proposals become stale)."""
    client = _client(ctx, as_governor)
    _report(client.propose_remove_governor(address), as_json, client.quorum())


@propose.command("set-quorum")
@click.argument("quorum", type=click.IntRange(min=1))
@as_option
@json_option
@click.pass_context
def set_quorum(ctx: click.Context, quorum: int, as_governor: str | None, as_json: bool) -> None:
    """Propose requiring QUORUM approvals from now on."""
    client = _client(ctx, as_governor)
    _report(client.propose_set_quorum(quorum), as_json, client.quorum())


@gov.command()
@click.argument("proposal_id", type=click.IntRange(min=0))
@as_option
@json_option
@click.pass_context
def approve(ctx: click.Context, proposal_id: int, as_governor: str | None, as_json: bool) -> None:
    """Approve PROPOSAL_ID; it executes once the quorum is met."""
    client = _client(ctx, as_governor)
    _report(client.approve(proposal_id), as_json, client.quorum())


@gov.command()
@click.argument("proposal_id", type=click.IntRange(min=0))
@as_option
@json_option
@click.pass_context
def execute(ctx: click.Context, proposal_id: int, as_governor: str | None, as_json: bool) -> None:
    """Execute PROPOSAL_ID if its approvals already meet the quorum."""
    client = _client(ctx, as_governor)
    _report(client.execute(proposal_id), as_json, client.quorum())


def _proposal_json(p: ProposalInfo) -> dict[str, Any]:
    return {
        "proposal_id": p.proposal_id,
        "action": p.action.label,
        "target": p.target,
        "quorum": p.quorum,
        "name": p.name,
        "proposer": p.proposer,
        "approvals": p.approvals,
        "executed": p.executed,
        "stale": p.stale,
        "created_at": p.created_at,
    }


@gov.command("list")
@click.option("--pending", is_flag=True, help="Only proposals that can still execute.")
@wide_option
@json_option
@click.pass_context
def list_proposals(ctx: click.Context, pending: bool, wide: bool, as_json: bool) -> None:
    """List proposals with their approvals and state."""
    client = _client(ctx, signing=False)
    proposals = [p for p in client.proposals() if not pending or (not p.executed and not p.stale)]
    if as_json:
        emit_json([_proposal_json(p) for p in proposals])
        return
    quorum = client.quorum()
    rows = [
        (
            p.proposal_id,
            p.action.label,
            p.target or p.quorum,
            p.name or "-",
            f"{p.approvals}/{quorum}",
            "executed" if p.executed else "stale" if p.stale else "pending",
            iso_time(p.created_at),
        )
        for p in proposals
    ]
    emit_table("proposals", ["id", "action", "target", "name", "approvals", "state", "created"], rows, wide=wide)


def _agent_json(a: AgentInfo) -> dict[str, Any]:
    return {
        "address": a.address,
        "name": a.name,
        "active": a.active,
        "approved_at": a.approved_at,
        "revoked_at": a.revoked_at or None,
        "approved_block": a.approved_block,
        "revoked_block": a.revoked_block or None,
        "checkpoints": a.checkpoint_count,
        "size": a.latest_size,
    }


@gov.command()
@wide_option
@json_option
@click.pass_context
def agents(ctx: click.Context, wide: bool, as_json: bool) -> None:
    """List approved agents (active and revoked) with their active windows."""
    client = _client(ctx, signing=False)
    found = client.agents()
    if as_json:
        emit_json([_agent_json(a) for a in found])
        return
    rows = [
        (
            a.address,
            a.name,
            "active" if a.active else "revoked",
            f"{iso_time(a.approved_at)} (block {a.approved_block})",
            f"{iso_time(a.revoked_at)} (block {a.revoked_block})" if a.revoked_block else "-",
            a.checkpoint_count,
            a.latest_size,
        )
        for a in found
    ]
    emit_table(
        "agents", ["address", "name", "state", "approved", "revoked", "checkpoints", "log size"], rows, wide=wide
    )
