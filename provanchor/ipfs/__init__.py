"""IPFS: content identifiers computed locally, and a trustless client for the Kubo RPC API.

The client (and with it ipfshttpclient) is imported lazily, on first use of
`IpfsClient` / `IpfsError`, so code that only computes CIDs or reads CARs does
not pay for an HTTP stack it never uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from provanchor.ipfs.car import CarError, car_bytes, read_car, write_car
from provanchor.ipfs.cid import CID, DAG_CBOR, DAG_PB, RAW
from provanchor.ipfs.unixfs import (
    UnixFSBuilder,
    UnixFSError,
    cid_for_bytes,
    cid_for_file,
    iter_bytes_blocks,
    iter_file_blocks,
)

if TYPE_CHECKING:
    from provanchor.ipfs.client import IpfsClient, IpfsError

__all__ = [
    "CID",
    "DAG_CBOR",
    "DAG_PB",
    "RAW",
    "CarError",
    "IpfsClient",
    "IpfsError",
    "UnixFSBuilder",
    "UnixFSError",
    "car_bytes",
    "cid_for_bytes",
    "cid_for_file",
    "iter_bytes_blocks",
    "iter_file_blocks",
    "read_car",
    "write_car",
]


def __getattr__(name: str) -> Any:
    if name in ("IpfsClient", "IpfsError"):
        from provanchor.ipfs import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
