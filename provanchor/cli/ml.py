"""`provanchor ml trace | verify | models`: ML lifecycle provenance (issue 8).

Read-only: they need the data directory's network.json and the local index
(synced first unless ``--no-sync``), never the agent's key. Recording is the
Python API's job (``provanchor.ml.Tracker``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from provanchor.cli.agent import password_file_option
from provanchor.cli.context import app, emit_json, emit_table, iso_time, json_option
from provanchor.cli.verify import finish

_F = TypeVar("_F", bound=Callable[..., Any])


def _index_options(function: _F) -> _F:
    options = [
        click.option(
            "--index",
            "index_path",
            type=click.Path(dir_okay=False),
            default=None,
            help="The index database (default: index.sqlite in the data directory).",
        ),
        click.option("--no-sync", is_flag=True, help="Use the index as it is, without following the chain first."),
        json_option,
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _open_index(ctx: click.Context, index_path: str | None, no_sync: bool) -> Any:
    from provanchor.index.fresh import open_index
    from provanchor.network import load_network

    home = app(ctx).home
    store, _ = open_index(home, Path(index_path) if index_path else None, sync=not no_sync)
    try:
        network = load_network(home)
    except BaseException:
        store.close()
        raise
    return store, network


@click.group()
def ml() -> None:
    """ML lifecycle provenance: datasets, training runs, models, evaluations, inference receipts."""


@ml.command()
@click.argument("event_id")
@_index_options
@click.pass_context
def trace(ctx: click.Context, event_id: str, index_path: str | None, no_sync: bool, as_json: bool) -> None:
    """The chain of parents from EVENT_ID (a record CID) back to the datasets, leaf first."""
    from provanchor.ml.events import split_event_id
    from provanchor.ml.trace import trace_event

    split_event_id(event_id)  # bad input fails before any connection
    store, _ = _open_index(ctx, index_path, no_sync)
    with store:
        result = trace_event(store, event_id)
    if as_json:
        emit_json(result.to_json())
    else:
        rows = []
        for node in result.nodes:
            data = node.to_json()
            summary = data.get("summary") or {}
            label = " ".join(
                str(summary.get(k))
                for k in ("name", "version")
                if isinstance(summary, dict) and summary.get(k) is not None
            )
            rows.append(
                [
                    "  " * node.depth + node.kind.value,
                    node.record_id,
                    label,
                    iso_time(data.get("time")),
                    "; ".join(node.problems) or "ok",
                ]
            )
        emit_table(f"trace of {result.root}", ["kind", "record", "name", "time", "status"], rows)
    ctx.exit(0 if not result.problems else 1)


@ml.command()
@click.argument("event_id")
@click.option("--no-files", is_flag=True, help="Skip the checks of files on this machine (for auditors elsewhere).")
@_index_options
@click.pass_context
def verify(
    ctx: click.Context, event_id: str, no_files: bool, index_path: str | None, no_sync: bool, as_json: bool
) -> None:
    """Verify EVENT_ID and every event it came from: authentic, anchored, consistent, files unchanged.

    Exit code 0 exactly when every check passed.
    """
    from provanchor.ml.events import split_event_id
    from provanchor.ml.verify import verify_event

    split_event_id(event_id)
    store, network = _open_index(ctx, index_path, no_sync)
    with store:
        report = verify_event(store, network, event_id, check_files=not no_files)
    finish(ctx, report, as_json)


@ml.command("check-proof")
@click.argument("proof_file", type=click.Path(dir_okay=False, exists=True))
@click.argument("sample_file", type=click.Path(dir_okay=False, exists=True), required=False)
@click.option("--sample-sha256", default=None, metavar="HEX", help="The sample's SHA-256 instead of the sample.")
@_index_options
@click.pass_context
def check_proof(
    ctx: click.Context,
    proof_file: str,
    sample_file: str | None,
    sample_sha256: str | None,
    index_path: str | None,
    no_sync: bool,
    as_json: bool,
) -> None:
    """Check a membership proof (PROOF_FILE, the JSON of MembershipProof.to_json) for SAMPLE_FILE's bytes.

    The path must lead from the sample to the digest that an anchored dataset record carries.
    Exit code 0 exactly when every check passed.
    """
    import json

    from provanchor.errors import UsageError
    from provanchor.ml.dataset import MembershipProof
    from provanchor.ml.verify import verify_membership

    if (sample_file is None) == (sample_sha256 is None):
        raise UsageError("give the sample as SAMPLE_FILE or its hash as --sample-sha256, not both")
    try:
        proof = MembershipProof.from_json(json.loads(Path(proof_file).read_text(encoding="utf-8")))
        digest = bytes.fromhex(sample_sha256.removeprefix("0x")) if sample_sha256 else None
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"not a membership proof or sha256: {exc}") from None
    sample = Path(sample_file).read_bytes() if sample_file else None
    store, network = _open_index(ctx, index_path, no_sync)
    with store:
        report = verify_membership(store, network, proof, sample, sample_sha256=digest)
    finish(ctx, report, as_json)


@ml.command()
@_index_options
@click.pass_context
def models(ctx: click.Context, index_path: str | None, no_sync: bool, as_json: bool) -> None:
    """Every model event in the index, with its training run and evaluations."""
    from provanchor.ml.trace import list_models

    store, _ = _open_index(ctx, index_path, no_sync)
    with store:
        found = list_models(store)
    if as_json:
        emit_json(found)
        return
    rows = []
    for model in found:
        evaluations = model.get("evaluations") or []
        metrics = evaluations[-1].get("metrics") if isinstance(evaluations, list) and evaluations else None
        rows.append(
            [
                model.get("name"),
                model.get("version"),
                model["record_id"],
                iso_time(model.get("time")),
                model.get("problem")
                or (", ".join(f"{k}={v}" for k, v in metrics.items()) if isinstance(metrics, dict) else ""),
            ]
        )
    emit_table("models", ["name", "version", "record", "time", "latest evaluation / problem"], rows)


envelope_output_option = click.option(
    "-o", "--output", required=True, type=click.Path(dir_okay=False, writable=True),
    help="Where to write the DSSE envelope (JSON).",
)


@ml.group("export")
def ml_export() -> None:
    """ML events in the ecosystem's formats."""


@ml_export.command("intoto")
@click.argument("model_event")
@envelope_output_option
@password_file_option
@_index_options
@click.pass_context
def export_intoto(
    ctx: click.Context,
    model_event: str,
    output: str,
    password_file: str | None,
    index_path: str | None,
    no_sync: bool,
    as_json: bool,
) -> None:
    """MODEL_EVENT (a model record's CID) as an in-toto statement (SLSA provenance v1: the parameters file,
    built from the training run's code and datasets) in a DSSE envelope signed by its agent."""
    from provanchor.cli.interop import sign_and_write  # imported here: cli.interop imports this module
    from provanchor.interop.intoto import model_statement
    from provanchor.ml.events import split_event_id

    split_event_id(model_event)
    store, _ = _open_index(ctx, index_path, no_sync)
    with store:
        statement, anchored = model_statement(store, model_event)
    sign_and_write(ctx, statement, anchored.record.agent, output, password_file, as_json)
