"""Gas per `anchor` as an agent's log grows, and anchors per second against local anvil.

Runs its own anvil in a temporary data directory, deploys the ledger, approves
one agent and then:

1. grows the agent's log from 10^3 to 2^20 leaves, anchoring batches of
   `--batch` leaves at each scale (consistency proofs computed from the agent's
   O(log n) compact range, exactly as the pipeline does) and prints the gas
   used per anchor and the proof length;
2. sustains `--count` anchors, pipelined (signed with local nonces, receipts
   awaited afterwards) and one at a time (send, then wait), and prints anchors
   per second for both.

Targets (issue 2): at most 80,000 gas per anchor at 2^20 leaves; at least 100
anchors per second.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from eth_account import Account
from web3 import Web3

from provanchor.chain.client import LedgerClient
from provanchor.formats import merkle
from provanchor.localnet.processes import AnvilService

CID = bytes.fromhex("01711220") + bytes(32)
GAS_LIMIT = 300_000


def leaf(i: int) -> bytes:
    return merkle.leaf_hash(i.to_bytes(8, "big"))


class Log:
    """The agent side: a compact range, the next leaf number and the next checkpoint index."""

    def __init__(self) -> None:
        self.range = merkle.CompactRange()
        self.checkpoints = 0

    def next_batch(self, count: int) -> tuple[int, int, bytes, list[bytes]]:
        start = self.range.size
        batch = [leaf(i) for i in range(start, start + count)]
        proof = self.range.consistency_proof_to(batch) if start else []
        self.range.extend(batch)
        self.checkpoints += 1
        return self.checkpoints - 1, self.range.size, self.range.root(), proof


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=1024, help="leaves per anchor while measuring gas")
    parser.add_argument("--samples", type=int, default=12, help="anchors measured at each scale")
    parser.add_argument("--count", type=int, default=1000, help="anchors for the throughput runs")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="provanchor-bench-") as tmp:
        anvil = AnvilService(Path(tmp))
        url = anvil.start()
        try:
            run(url, args.batch, args.samples, args.count)
        finally:
            anvil.stop()


def funded(url: str) -> object:
    account = Account.create()
    Web3(Web3.HTTPProvider(url)).provider.make_request("anvil_setBalance", [account.address, hex(10**24)])  # type: ignore[arg-type]
    return account


def new_agent(url: str) -> LedgerClient:
    governor = funded(url)
    client, _ = LedgerClient.deploy(url, governor, [governor.address], 1)  # type: ignore[attr-defined, arg-type]
    agent = funded(url)
    client.propose_add_agent(agent.address, "bench")  # type: ignore[attr-defined]
    return client.with_account(agent)  # type: ignore[arg-type]


def run(url: str, batch: int, samples: int, count: int) -> None:
    print(f"anvil at {url}; batch {batch} leaves per anchor\n")
    client = new_agent(url)
    log = Log()
    print(f"{'around':>10} {'batch':>6} {'gas mean':>9} {'gas p50':>8} {'gas min':>8} {'gas max':>8} {'proof len':>10}")
    at_2_20: list[int] = []
    for scale in (10**3, 10**4, 10**5, 10**6, 2**20):
        # Jump to just below the scale with one anchor (a valid extension), then measure a
        # window of anchors centred on it. Each third anchor opens a new size/time storage slot.
        step = max(1, min(batch, scale // (2 * samples)))
        target = scale - step * samples // 2
        if target > log.range.size:
            index, size, root, proof = log.next_batch(target - log.range.size)
            client.anchor(size, root, CID, proof, index=index, gas=GAS_LIMIT)
        gases, proof_lengths = [], []
        for _ in range(samples):
            index, size, root, proof = log.next_batch(step)
            result = client.anchor(size, root, CID, proof, index=index, gas=GAS_LIMIT)
            gases.append(result.gas_used)
            proof_lengths.append(len(proof))
        if scale == 2**20:
            at_2_20 = gases
        print(
            f"{scale:>10,} {step:>6} {statistics.mean(gases):>9,.0f} {statistics.median(gases):>8,.0f} "
            f"{min(gases):>8,} {max(gases):>8,} {statistics.mean(proof_lengths):>10.1f}"
        )
    mean = statistics.mean(at_2_20)
    print(
        f"\naround 2^20 leaves: mean {mean:,.0f} gas, median {statistics.median(at_2_20):,.0f}, max {max(at_2_20):,} "
        f"(target 80,000: mean {'meets' if mean <= 80_000 else 'MISSES'}, "
        f"max {'meets' if max(at_2_20) <= 80_000 else 'MISSES'})\n"
    )

    # Throughput: a fresh agent, so storage growth from the gas run does not skew it.
    client = new_agent(url)
    log = Log()
    batches = [log.next_batch(16) for _ in range(count)]
    started = time.perf_counter()
    hashes = [
        client.send_anchor(size, root, CID, proof, index=index, gas=GAS_LIMIT) for index, size, root, proof in batches
    ]
    sent = time.perf_counter()
    for tx in hashes:
        client.wait_anchor(tx)
    pipelined = count / (time.perf_counter() - started)
    print(
        f"pipelined: {count} anchors in {time.perf_counter() - started:.2f} s "
        f"(signing+sending {sent - started:.2f} s) = {pipelined:,.0f} anchors/s"
    )

    sequential_count = max(count // 4, 50)
    batches = [log.next_batch(16) for _ in range(sequential_count)]
    started = time.perf_counter()
    for index, size, root, proof in batches:
        client.anchor(size, root, CID, proof, index=index, gas=GAS_LIMIT)
    sequential = sequential_count / (time.perf_counter() - started)
    print(f"one at a time (send, wait for receipt): {sequential:,.0f} anchors/s over {sequential_count}")
    verdict = "meets" if pipelined >= 100 else "MISSES"
    print(f"sustained anchors per second: {pipelined:,.0f} ({verdict} the 100/s target)")


if __name__ == "__main__":
    main()
