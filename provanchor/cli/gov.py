"""`provanchor gov`: proposals and approvals among the consortium's governors.

The five `propose` commands and `approve`/`execute` are declared once, from
`provanchor.governance.PROPOSALS`; each parses, calls one library function
and prints.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from provanchor.cli.context import app, emit_json, emit_table, iso_time, json_option, wide_option

if TYPE_CHECKING:
    from provanchor.chain.client import AgentInfo, ProposalInfo
    from provanchor.governance import GovernanceResult, ProposalKind

_SIGNER_OPTIONS = (
    click.option(
        "--as",
        "as_governor",
        default=None,
        metavar="ADDRESS_OR_INDEX",
        help="Act as this dev governor: an index (0 = first) or its address. Default: the first.",
    ),
    click.option(
        "--keystore",
        type=click.Path(dir_okay=False),
        default=None,
        help="Sign with this governor keystore (eth-account V3) instead of a dev key.",
    ),
    click.option(
        "--password-file",
        type=click.Path(dir_okay=False),
        default=None,
        help="File holding the keystore password (else $PROVANCHOR_PASSWORD, else a prompt).",
    ),
)


def _signer_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_SIGNER_OPTIONS):
        command = option(command)
    return command


def _report(result: GovernanceResult, as_json: bool) -> None:
    outcome, quorum = result.outcome, result.quorum
    if as_json:
        emit_json(result.to_json())
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


def _proposal_command(kind: ProposalKind) -> click.Command:
    @click.pass_context
    def command(ctx: click.Context, /, target: str | int, as_json: bool, **options: Any) -> None:
        from provanchor.governance import Signer
        from provanchor.governance import propose as send

        signer = Signer(options["as_governor"], options["keystore"], options["password_file"])
        _report(send(app(ctx).home, kind, target, signer, options.get("name")), as_json)

    command.__doc__ = kind.summary
    decorated: Callable[..., Any] = json_option(_signer_options(command))
    if kind.takes_name:
        decorated = click.option("--name", required=True, help="Human name of the agent (host, service...).")(
            decorated
        )
    argument = click.argument("target", metavar=kind.argument.upper(), type=str)
    if kind.argument == "quorum":
        argument = click.argument("target", metavar="QUORUM", type=click.IntRange(min=1))
    return click.command(kind.command)(argument(decorated))


def _decision_command(action: str, summary: str) -> click.Command:
    @click.argument("proposal_id", type=click.IntRange(min=0))
    @_signer_options
    @json_option
    @click.pass_context
    def command(ctx: click.Context, /, proposal_id: int, as_json: bool, **options: Any) -> None:
        from provanchor.governance import Signer, decide

        signer = Signer(options["as_governor"], options["keystore"], options["password_file"])
        _report(decide(app(ctx).home, action, proposal_id, signer), as_json)  # type: ignore[arg-type]

    command.__doc__ = summary
    return click.command(action)(command)


def _register() -> None:
    from provanchor.governance import PROPOSALS

    for kind in PROPOSALS:
        propose.add_command(_proposal_command(kind))
    gov.add_command(_decision_command("approve", "Approve PROPOSAL_ID; it executes once the quorum is met."))
    gov.add_command(_decision_command("execute", "Execute PROPOSAL_ID if its approvals already meet the quorum."))


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
    from provanchor.governance import list_proposals as proposals_of

    proposals, quorum = proposals_of(app(ctx).home, pending)
    if as_json:
        emit_json([_proposal_json(p) for p in proposals])
        return
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
    from provanchor.governance import list_agents

    found = list_agents(app(ctx).home)
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


_register()
