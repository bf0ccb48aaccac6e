"""A typed client for the ProvenanceLedger contract.

Reads go through `eth_call`; writes through a `Transactor` bound to one local
key. Every refusal of the contract surfaces as `provanchor.errors.ContractError`
carrying the Solidity error's name and arguments.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import requests
from eth_abi.abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from eth_utils.abi import event_abi_to_log_topic
from eth_utils.address import is_address, to_checksum_address
from web3 import Web3
from web3.contract import Contract
from web3.providers.rpc.utils import ExceptionRetryConfiguration

from provanchor.chain.artifact import load_artifact
from provanchor.chain.events import (
    GOVERNANCE_EVENTS,
    Anchored,
    ChainEvent,
    GovernanceEvent,
    ProposalApproved,
    ProposalCreated,
    ProposalExecuted,
    SnapshotAnchored,
    decode_event,
)
from provanchor.chain.revert import RevertDecoder, revert_data_from_exception
from provanchor.chain.transactor import Receipt, Transactor
from provanchor.errors import ChainUnavailable, ConfigError, ContractError, UsageError

_BATCH = 200
_TRANSIENT = (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError)


class Action(enum.IntEnum):
    ADD_AGENT = 0
    REVOKE_AGENT = 1
    ADD_GOVERNOR = 2
    REMOVE_GOVERNOR = 3
    SET_QUORUM = 4

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")


@dataclass(frozen=True)
class Checkpoint:
    agent: str
    index: int
    size: int
    root: bytes
    timestamp: int


@dataclass(frozen=True)
class AgentInfo:
    address: str
    name: str
    approved_at: int
    revoked_at: int
    approved_block: int
    revoked_block: int
    checkpoint_count: int
    latest_size: int

    @property
    def registered(self) -> bool:
        return self.approved_at != 0

    @property
    def active(self) -> bool:
        return self.approved_at != 0 and self.revoked_at == 0


@dataclass(frozen=True)
class ProposalInfo:
    proposal_id: int
    action: Action
    target: str | None
    quorum: int | None
    name: str
    proposer: str
    approvals: int
    executed: bool
    stale: bool
    created_at: int


@dataclass(frozen=True)
class ProposalOutcome:
    proposal_id: int
    executed: bool
    approvals: int
    tx: str
    block: int


@dataclass(frozen=True)
class AnchorResult:
    index: int
    size: int
    root: bytes
    tx: str
    block: int
    gas_used: int


@dataclass(frozen=True)
class SnapshotAnchor:
    resource_id: bytes
    index: int
    agent: str
    cid: bytes
    state_root: bytes
    checkpoint_index: int
    timestamp: int


def checksum(address: str) -> str:
    """Validate and checksum an address, or fail with a one-line UsageError."""
    if not isinstance(address, str) or not is_address(address):
        raise UsageError(f"not a valid Ethereum address: {address!r}")
    return str(to_checksum_address(address))


def connect(rpc_url: str, timeout: float = 30.0) -> Web3:
    """A Web3 over HTTP that retries read-only calls on transient failures."""
    provider = Web3.HTTPProvider(
        rpc_url,
        request_kwargs={"timeout": timeout},
        exception_retry_configuration=ExceptionRetryConfiguration(
            errors=(requests.ConnectionError, requests.Timeout), retries=3, backoff_factor=0.1
        ),
    )
    return Web3(provider)


class LedgerClient:
    """Reads and (given an account) writes the ledger at `address` on `rpc_url`."""

    def __init__(self, rpc_url: str, address: str, account: LocalAccount | None = None) -> None:
        self.rpc_url = rpc_url
        self.w3 = connect(rpc_url)
        self.address = checksum(address)
        artifact = load_artifact()
        self.contract: Contract = self.w3.eth.contract(address=self.address, abi=artifact.abi)  # type: ignore[call-overload]
        self.decoder = RevertDecoder(artifact.abi)
        self._chain_id: int | None = None
        self._transactor: Transactor | None = None
        self._account = account
        self._selectors: dict[str, tuple[bytes, list[str]]] = {}

    # ------------------------------------------------------------ construction

    @classmethod
    def deploy(
        cls, rpc_url: str, deployer: LocalAccount, governors: Sequence[str], quorum: int
    ) -> tuple[LedgerClient, Receipt]:
        w3 = connect(rpc_url)
        artifact = load_artifact()
        factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        data = factory.constructor([checksum(g) for g in governors], quorum).data_in_transaction
        chain_id = _chain_id(w3)
        transactor = Transactor(w3, deployer, RevertDecoder(artifact.abi), chain_id)
        receipt = transactor.transact(None, data)
        contract_address = receipt.raw["contractAddress"]
        return cls(rpc_url, contract_address, deployer), receipt

    def with_account(self, account: LocalAccount) -> LedgerClient:
        return LedgerClient(self.rpc_url, self.address, account)

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = _chain_id(self.w3)
        return self._chain_id

    @property
    def transactor(self) -> Transactor:
        if self._account is None:
            raise ConfigError("this operation needs a signing key, and none was given")
        if self._transactor is None:
            self._transactor = Transactor(self.w3, self._account, self.decoder, self.chain_id)
        return self._transactor

    def ensure_deployed(self) -> None:
        """Fail clearly when there is no contract at the address (wrong network or fresh chain)."""
        try:
            code = self.w3.eth.get_code(self.address)  # type: ignore[arg-type]
        except _TRANSIENT as exc:
            raise ChainUnavailable(f"chain RPC at {self.rpc_url} does not answer") from exc
        if len(code) == 0:
            raise ConfigError(f"no contract code at {self.address} on {self.rpc_url}")

    def block_number(self) -> int:
        try:
            return int(self.w3.eth.block_number)
        except _TRANSIENT as exc:
            raise ChainUnavailable(f"chain RPC at {self.rpc_url} does not answer") from exc

    # ------------------------------------------------------------ low-level

    def _view(self, name: str, *args: Any, block: int | str = "latest") -> Any:
        try:
            return getattr(self.contract.functions, name)(*args).call(block_identifier=block)
        except _TRANSIENT as exc:
            raise ChainUnavailable(f"chain RPC at {self.rpc_url} does not answer") from exc
        except Exception as exc:
            data = revert_data_from_exception(exc)
            if data is not None:
                raise self.decoder.decode(data) from exc
            raise

    def encode(self, name: str, *args: Any) -> str:
        return str(self.contract.encode_abi(name, args=list(args)))

    def _transact(self, name: str, *args: Any, gas: int | None = None) -> Receipt:
        return self.transactor.transact(self.address, self.encode(name, *args), gas=gas)

    def events(self, receipt: Receipt, event: str) -> list[ChainEvent]:
        """The typed `event`s this contract emitted in a transaction."""
        handler = getattr(self.contract.events, event)()
        mine = [log for log in receipt.logs if Web3.to_checksum_address(log["address"]) == self.address]
        return [decode_event(handler.process_log(log)) for log in mine if _topic0(log) == _event_topic(handler)]

    def _logs(self, event: str, filters: dict[str, Any], from_block: int, to_block: int | str) -> list[ChainEvent]:
        try:
            logs = getattr(self.contract.events, event)().get_logs(
                from_block=from_block, to_block=to_block, argument_filters=filters or None
            )
        except _TRANSIENT as exc:
            raise ChainUnavailable(f"chain RPC at {self.rpc_url} does not answer") from exc
        return [decode_event(log) for log in logs]

    # ------------------------------------------------------------ governance: writes

    def propose_add_agent(self, agent: str, name: str) -> ProposalOutcome:
        return self._propose("proposeAddAgent", checksum(agent), name)

    def propose_revoke_agent(self, agent: str) -> ProposalOutcome:
        return self._propose("proposeRevokeAgent", checksum(agent))

    def propose_add_governor(self, account: str) -> ProposalOutcome:
        return self._propose("proposeAddGovernor", checksum(account))

    def propose_remove_governor(self, account: str) -> ProposalOutcome:
        return self._propose("proposeRemoveGovernor", checksum(account))

    def propose_set_quorum(self, quorum: int) -> ProposalOutcome:
        if quorum < 1:
            raise UsageError(f"quorum must be at least 1, got {quorum}")
        return self._propose("proposeSetQuorum", quorum)

    def approve(self, proposal_id: int) -> ProposalOutcome:
        receipt = self._transact("approve", proposal_id)
        return self._outcome(proposal_id, receipt)

    def execute(self, proposal_id: int) -> ProposalOutcome:
        receipt = self._transact("execute", proposal_id)
        return self._outcome(proposal_id, receipt)

    def _propose(self, function: str, *args: Any) -> ProposalOutcome:
        receipt = self._transact(function, *args)
        created = [e for e in self.events(receipt, "ProposalCreated") if isinstance(e, ProposalCreated)]
        if not created:
            raise ContractError("NoProposalEvent", {}, "the proposal transaction emitted no ProposalCreated")
        return self._outcome(created[0].proposal_id, receipt)

    def _outcome(self, proposal_id: int, receipt: Receipt) -> ProposalOutcome:
        executed = any(
            isinstance(e, ProposalExecuted) and e.proposal_id == proposal_id
            for e in self.events(receipt, "ProposalExecuted")
        )
        approved = [
            e
            for e in self.events(receipt, "ProposalApproved")
            if isinstance(e, ProposalApproved) and e.proposal_id == proposal_id
        ]
        approvals = approved[-1].approvals if approved else 0
        return ProposalOutcome(proposal_id, executed, approvals, receipt.tx_hash, receipt.block_number)

    # ------------------------------------------------------------ governance: reads

    def governors(self) -> list[str]:
        return [str(a) for a in self._view("governors")]

    def quorum(self) -> int:
        return int(self._view("quorum"))

    def is_governor(self, account: str) -> bool:
        return bool(self._view("isGovernor", checksum(account)))

    def proposal_count(self) -> int:
        return int(self._view("proposalCount"))

    def proposal(self, proposal_id: int) -> ProposalInfo:
        action, target, quorum, name, proposer, approvals, executed, stale, created = self._view(
            "proposal", proposal_id
        )
        kind = Action(int(action))
        return ProposalInfo(
            proposal_id=proposal_id,
            action=kind,
            target=None if kind == Action.SET_QUORUM else str(target),
            quorum=int(quorum) if kind == Action.SET_QUORUM else None,
            name=str(name),
            proposer=str(proposer),
            approvals=int(approvals),
            executed=bool(executed),
            stale=bool(stale),
            created_at=int(created),
        )

    def proposals(self) -> list[ProposalInfo]:
        return [self.proposal(i) for i in range(1, self.proposal_count() + 1)]

    def has_approved(self, proposal_id: int, governor: str) -> bool:
        return bool(self._view("hasApproved", proposal_id, checksum(governor)))

    def agent_info(self, agent: str) -> AgentInfo:
        address = checksum(agent)
        name, approved_at, revoked_at, approved_block, revoked_block, count, latest = self._view("agentInfo", address)
        return AgentInfo(
            address,
            str(name),
            int(approved_at),
            int(revoked_at),
            int(approved_block),
            int(revoked_block),
            int(count),
            int(latest),
        )

    def agents(self) -> list[AgentInfo]:
        return [self.agent_info(a) for a in self._view("agents")]

    def agent_active_at_block(self, agent: str, block_number: int) -> bool:
        return bool(self._view("agentActiveAtBlock", checksum(agent), block_number))

    def agent_active_at(self, agent: str, timestamp: int) -> bool:
        return bool(self._view("agentActiveAt", checksum(agent), timestamp))

    # ------------------------------------------------------------ checkpoints

    def anchor(
        self,
        size: int,
        root: bytes,
        manifest_cid: bytes,
        proof: Sequence[bytes],
        *,
        index: int | None = None,
        gas: int | None = None,
    ) -> AnchorResult:
        """Anchor checkpoint `index` (default: the next one, read from the chain)."""
        return self.wait_anchor(self.send_anchor(size, root, manifest_cid, proof, index=index, gas=gas))

    def send_anchor(
        self,
        size: int,
        root: bytes,
        manifest_cid: bytes,
        proof: Sequence[bytes],
        *,
        index: int | None = None,
        gas: int | None = None,
    ) -> str:
        """Broadcast an anchor without waiting (pipelines wait on the hash later)."""
        if index is None:
            index = self.checkpoint_count(self.transactor.address)
        data = self.encode("anchor", index, size, root, manifest_cid, list(proof))
        return self.transactor.send(self.address, data, gas=gas)

    def wait_anchor(self, tx_hash: str, timeout: float = 120.0) -> AnchorResult:
        return self._anchor_result(self.transactor.wait(tx_hash, timeout=timeout))

    def _anchor_result(self, receipt: Receipt) -> AnchorResult:
        (event,) = self.events(receipt, "Anchored")
        assert isinstance(event, Anchored)
        return AnchorResult(
            event.index,
            event.size,
            event.root,
            receipt.tx_hash,
            receipt.block_number,
            receipt.gas_used,
        )

    def checkpoint_count(self, agent: str) -> int:
        return int(self._view("checkpointCount", checksum(agent)))

    def checkpoint(self, agent: str, index: int) -> Checkpoint:
        size, root, timestamp = self._view("checkpoint", checksum(agent), index)
        return Checkpoint(checksum(agent), index, int(size), bytes(root), int(timestamp))

    def latest_checkpoint(self, agent: str) -> Checkpoint | None:
        try:
            index, size, root, timestamp = self._view("latestCheckpoint", checksum(agent))
        except ContractError as exc:
            if exc.name == "NoCheckpoints":
                return None
            raise
        return Checkpoint(checksum(agent), int(index), int(size), bytes(root), int(timestamp))

    def checkpoint_at_or_before(self, agent: str, timestamp: int) -> Checkpoint | None:
        try:
            index, size, root, at = self._view("checkpointAtOrBefore", checksum(agent), timestamp)
        except ContractError as exc:
            if exc.name == "NoCheckpointAtOrBefore":
                return None
            raise
        return Checkpoint(checksum(agent), int(index), int(size), bytes(root), int(at))

    def anchor_events(
        self, agent: str | None = None, from_block: int = 0, to_block: int | str = "latest"
    ) -> list[Anchored]:
        """Anchored events (optionally of one agent), in chain order."""
        filters: dict[str, Any] = {} if agent is None else {"agent": checksum(agent)}
        return [e for e in self._logs("Anchored", filters, from_block, to_block) if isinstance(e, Anchored)]

    def governance_events(self, from_block: int = 0, to_block: int | str = "latest") -> list[GovernanceEvent]:
        """Every governance event (proposals, approvals, executions and their effects), in chain order."""
        found: list[GovernanceEvent] = []
        for name in GOVERNANCE_EVENTS:
            logs = self._logs(name, {}, from_block, to_block)
            found.extend(e for e in logs if not isinstance(e, Anchored | SnapshotAnchored))
        return sorted(found, key=lambda e: (e.mined.block, e.mined.log_index))

    def call_views(self, calls: Sequence[tuple[str, tuple[Any, ...]]]) -> list[bool]:
        """Boolean views of the ledger, many per JSON-RPC batch request.

        A verification asks the contract two questions per checkpoint; one
        HTTP round trip each through web3 costs about 5 ms, so a 100-checkpoint
        log spent a second on them. Batches of `_BATCH` calls cost one trip.
        """
        answers: list[bool] = []
        for start in range(0, len(calls), _BATCH):
            chunk = calls[start : start + _BATCH]
            payload: list[dict[str, Any]] = [
                {
                    "jsonrpc": "2.0",
                    "id": number,
                    "method": "eth_call",
                    "params": [{"to": self.address, "data": self._calldata(name, args)}, "latest"],
                }
                for number, (name, args) in enumerate(chunk)
            ]
            try:
                reply = requests.post(self.rpc_url, json=payload, timeout=60)
                results = {item["id"]: item for item in reply.json()}
            except (requests.RequestException, ValueError, TypeError, KeyError) as exc:
                raise ChainUnavailable(f"chain RPC at {self.rpc_url} does not answer a batch of calls") from exc
            for number, (name, _) in enumerate(chunk):
                item = results.get(number, {})
                value = item.get("result") if isinstance(item, dict) else None
                if not isinstance(value, str) or not value.startswith("0x"):
                    raise ChainUnavailable(f"chain RPC at {self.rpc_url} did not answer {name}: {item!r:.120}")
                answers.append(int(value, 16) != 0)
        return answers

    def _calldata(self, name: str, args: tuple[Any, ...]) -> str:
        """ABI call data, encoded with eth_abi directly: web3's encode_abi costs 2 ms a call."""
        found = self._selectors.get(name)
        if found is None:
            entries: list[dict[str, Any]] = [dict(f) for f in self.contract.abi]
            (function,) = [f for f in entries if f.get("type") == "function" and f.get("name") == name]
            types = [str(i["type"]) for i in function["inputs"]]
            signature = f"{name}({','.join(types)})".encode()
            found = self._selectors[name] = (bytes(Web3.keccak(signature))[:4], types)
        selector, types = found
        return "0x" + (selector + abi_encode(types, list(args))).hex()

    # ------------------------------------------------------------ snapshots

    def anchor_snapshot(self, resource_id: bytes, cid: bytes, state_root: bytes, checkpoint_index: int) -> Receipt:
        return self._transact("anchorSnapshot", resource_id, cid, state_root, checkpoint_index)

    def snapshot_events(self, agent: str | None = None, from_block: int = 0) -> list[SnapshotAnchored]:
        """SnapshotAnchored events (optionally of one agent), oldest first."""
        filters: dict[str, Any] = {} if agent is None else {"agent": checksum(agent)}
        logs = self._logs("SnapshotAnchored", filters, from_block, "latest")
        return [e for e in logs if isinstance(e, SnapshotAnchored)]

    def snapshot_count(self, resource_id: bytes) -> int:
        return int(self._view("snapshotCount", resource_id))

    def snapshot(self, resource_id: bytes, index: int) -> SnapshotAnchor:
        state_root, agent, timestamp, checkpoint_index, cid = self._view("snapshot", resource_id, index)
        return SnapshotAnchor(
            resource_id, index, str(agent), bytes(cid), bytes(state_root), int(checkpoint_index), int(timestamp)
        )

    # ------------------------------------------------------------ proofs (pure views)

    def verify_inclusion(self, leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
        return bool(self._view("verifyInclusion", leaf_hash, index, size, list(proof), root))

    def verify_consistency(self, size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]) -> bool:
        return bool(self._view("verifyConsistency", size1, size2, root1, root2, list(proof)))


def _chain_id(w3: Web3) -> int:
    try:
        return int(w3.eth.chain_id)
    except _TRANSIENT as exc:
        raise ChainUnavailable(f"chain RPC at {w3.provider.endpoint_uri} does not answer") from exc  # type: ignore[attr-defined]


def _topic0(log: Any) -> bytes:
    topics = log["topics"]
    return bytes(topics[0]) if topics else b""


def _event_topic(handler: Any) -> bytes:
    return bytes(event_abi_to_log_topic(handler.abi))
