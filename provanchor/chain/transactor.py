"""Sending transactions fast and safely from one local key.

Why not `contract.functions.f().transact()`: that asks the node for the nonce
and fee on every call and waits on receipts with a 100 ms poll, which caps a
log at about a dozen anchors per second. Here the nonce is tracked locally
(resynchronised from the node when it disagrees), fees are cached briefly,
transactions are signed locally (so the same code drives anvil and a
permissioned network where the node holds no keys), and receipts are polled
every few milliseconds.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import requests
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from web3 import Web3
from web3.exceptions import TransactionNotFound, Web3RPCError

from provanchor.chain.revert import RevertDecoder, revert_data_from_exception
from provanchor.errors import ChainUnavailable, ContractError, TransactionFailed

_FEE_TTL_SECONDS = 15.0
_TRANSIENT = (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError)


@dataclass(frozen=True)
class Receipt:
    tx_hash: str
    block_number: int
    gas_used: int
    status: int
    logs: list[Any] = field(default_factory=list)
    raw: Any = None


@dataclass(frozen=True)
class SignedTx:
    tx_hash: str
    raw: bytes
    nonce: int
    to: str | None
    data: str
    gas: int


@dataclass
class _FeeCache:
    params: dict[str, int]
    fetched_at: float


class Transactor:
    """Signs and sends transactions for one account with locally managed nonces."""

    def __init__(self, w3: Web3, account: LocalAccount, decoder: RevertDecoder, chain_id: int) -> None:
        self.w3 = w3
        self.account = account
        self.decoder = decoder
        self.chain_id = chain_id
        self._nonce: int | None = None
        self._lock = threading.Lock()
        self._fees: _FeeCache | None = None

    @property
    def address(self) -> str:
        return str(self.account.address)

    def forget_nonce(self) -> None:
        """Ask the node for the nonce next time: another process may have sent from this key."""
        with self._lock:
            self._nonce = None

    # ------------------------------------------------------------ preflight

    def estimate(self, to: str | None, data: str) -> int:
        """Gas for the call, raising the contract's custom error if it would revert."""
        tx: dict[str, Any] = {"from": self.address, "data": data}
        if to is not None:
            tx["to"] = to
        try:
            return int(self.w3.eth.estimate_gas(tx))  # type: ignore[arg-type]
        except _TRANSIENT as exc:
            raise ChainUnavailable(f"chain RPC does not answer: {exc}") from exc
        except Exception as exc:
            raise self._as_contract_error(exc) from exc

    def call(self, to: str, data: str, block: int | str = "latest") -> bytes:
        try:
            return bytes(self.w3.eth.call({"from": self.address, "to": to, "data": data}, block))  # type: ignore[arg-type, typeddict-item]
        except _TRANSIENT as exc:
            raise ChainUnavailable(f"chain RPC does not answer: {exc}") from exc
        except Exception as exc:
            raise self._as_contract_error(exc) from exc

    # ------------------------------------------------------------ sending

    def send(self, to: str | None, data: str, gas: int | None = None) -> str:
        """Sign and broadcast; returns the tx hash without waiting for it to be mined.

        With `gas=None` the call is estimated first, so a refusal surfaces as a
        named ContractError before anything is broadcast.
        """
        signed = self.sign(to, data, gas)
        self.broadcast(signed)
        return signed.tx_hash

    def sign(self, to: str | None, data: str, gas: int | None = None) -> SignedTx:
        """Sign with the next local nonce, without broadcasting.

        Callers that must survive a crash persist the returned raw bytes before
        broadcasting them: re-broadcasting identical bytes later is harmless.
        """
        if gas is None:
            gas = self.estimate(to, data) * 12 // 10 + 10_000
        with self._lock:
            nonce = self._next_nonce()
            tx: dict[str, Any] = {
                "chainId": self.chain_id,
                "nonce": nonce,
                "gas": gas,
                "data": data,
                "value": 0,
                **self._fee_params(),
            }
            if to is not None:
                tx["to"] = to
            raw = bytes(self.account.sign_transaction(tx).raw_transaction)
            self._nonce = nonce + 1
        return SignedTx("0x" + keccak(raw).hex(), raw, nonce, to, data, gas)

    def broadcast(self, signed: SignedTx) -> SignedTx:
        """Send signed bytes; returns the transaction that is actually in flight.

        If the node rejects the nonce or fee (another transaction took the nonce,
        fees moved), the same call is re-signed once the local state is fixed, and
        the new transaction is returned so callers can persist its hash.
        """
        current = signed
        for attempt in range(5):
            try:
                self.w3.eth.send_raw_transaction(current.raw)
                return current
            except Web3RPCError as exc:
                message = str(exc).lower()
                if "already known" in message or "already imported" in message:
                    return current
                if "nonce too low" in message or "nonce too high" in message:
                    with self._lock:
                        self._nonce = None
                    current = self.sign(current.to, current.data, current.gas)
                    continue
                if "fee" in message and ("low" in message or "base fee" in message):
                    with self._lock:
                        self._fees = None
                    current = self.sign(current.to, current.data, current.gas)
                    continue
                raise self._as_contract_error(exc) from exc
            except _TRANSIENT as exc:
                if attempt == 4:
                    raise ChainUnavailable(f"chain RPC does not answer: {exc}") from exc
                time.sleep(0.2 * (attempt + 1))
        raise TransactionFailed("could not broadcast the transaction after 5 attempts")

    def receipt(self, tx_hash: str) -> Receipt | None:
        """The receipt if the transaction is mined, else None (no waiting, no raising on revert)."""
        try:
            raw = self.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            return None
        except _TRANSIENT as exc:
            raise ChainUnavailable(f"chain RPC does not answer: {exc}") from exc
        return Receipt(
            tx_hash, int(raw["blockNumber"]), int(raw["gasUsed"]), int(raw["status"]), list(raw["logs"]), raw
        )

    def wait(self, tx_hash: str, timeout: float = 120.0) -> Receipt:
        """Poll for the receipt every few ms; raise the decoded error if it reverted."""
        deadline = time.monotonic() + timeout
        delay = 0.002
        while True:
            try:
                raw = self.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
            except TransactionNotFound:
                raw = None
            except _TRANSIENT as exc:
                if time.monotonic() > deadline:
                    raise ChainUnavailable(f"chain RPC does not answer: {exc}") from exc
                raw = None
                delay = max(delay, 0.5)
            if raw is not None:
                receipt = Receipt(
                    tx_hash=tx_hash,
                    block_number=int(raw["blockNumber"]),
                    gas_used=int(raw["gasUsed"]),
                    status=int(raw["status"]),
                    logs=list(raw["logs"]),
                    raw=raw,
                )
                if receipt.status != 1:
                    raise self._explain_failure(tx_hash, receipt)
                return receipt
            if time.monotonic() > deadline:
                raise TransactionFailed(f"transaction {tx_hash} was not mined within {timeout:.0f} s")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.05)

    def transact(self, to: str | None, data: str, gas: int | None = None, timeout: float = 120.0) -> Receipt:
        return self.wait(self.send(to, data, gas=gas), timeout=timeout)

    # ------------------------------------------------------------ internals

    def _next_nonce(self) -> int:
        if self._nonce is None:
            try:
                self._nonce = int(self.w3.eth.get_transaction_count(self.account.address, "pending"))
            except _TRANSIENT as exc:
                raise ChainUnavailable(f"chain RPC does not answer: {exc}") from exc
        return self._nonce

    def _fee_params(self) -> dict[str, int]:
        now = time.monotonic()
        if self._fees is None or now - self._fees.fetched_at > _FEE_TTL_SECONDS:
            latest = self.w3.eth.get_block("latest")
            base_fee = latest.get("baseFeePerGas")
            if base_fee is None:  # pre-London or a permissioned network without EIP-1559
                params = {"gasPrice": int(self.w3.eth.gas_price)}
            else:
                tip = int(self.w3.eth.max_priority_fee)
                params = {"maxFeePerGas": 2 * int(base_fee) + tip, "maxPriorityFeePerGas": tip}
            self._fees = _FeeCache(params, now)
        return dict(self._fees.params)

    def _as_contract_error(self, exc: BaseException) -> Exception:
        data = revert_data_from_exception(exc)
        if data is not None:
            return self.decoder.decode(data)
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return TransactionFailed(f"transaction refused by the node: {message}")

    def _explain_failure(self, tx_hash: str, receipt: Receipt) -> Exception:
        """Replay a reverted transaction as a call to recover its custom error."""
        tx = self.w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
        call = {"from": tx["from"], "to": tx["to"], "data": tx["input"]}
        for block in (receipt.block_number - 1, "latest"):
            try:
                self.w3.eth.call(call, block)  # type: ignore[arg-type]
            except Exception as exc:
                error = self._as_contract_error(exc)
                if isinstance(error, ContractError):
                    return error
        return TransactionFailed(f"transaction {tx_hash} reverted in block {receipt.block_number}")
