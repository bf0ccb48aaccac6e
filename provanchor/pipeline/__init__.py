"""The recording pipeline: spool (durability), batches, IPFS storage and on-chain anchoring."""
