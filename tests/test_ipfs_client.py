"""The trustless IPFS client against a real daemon, an unreachable port and a tampering proxy; CARv1 I/O."""

from __future__ import annotations

import http.client
import http.server
import io
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import ipfshttpclient
import pytest

from provanchor.errors import BlockMismatch, BlockNotFound, InvalidCid, IpfsUnavailable, UsageError
from provanchor.formats.car import CarError, car_bytes, encode_header, read_car, write_car
from provanchor.formats.cid import CID, DAG_CBOR, DAG_PB, RAW
from provanchor.formats.dagcbor import encode
from provanchor.formats.unixfs import CHUNK_SIZE, MAX_LINKS, UnixFSError, cid_for_bytes, cid_for_file, iter_bytes_blocks
from provanchor.formats.varint import encode_varint
from provanchor.ipfs.client import IpfsClient, IpfsError, api_multiaddr
from provanchor.localnet.processes import IpfsService
from provanchor.localnet.tools import LOOPBACK, free_port

pytestmark = pytest.mark.filterwarnings("ignore:The 'strict' parameter is no longer needed:FutureWarning")


def rand(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def cbor_link(cid: CID) -> bytes:
    """dag-cbor tag 42 around a binary CID (the 0x00 prefix is the identity multibase)."""
    payload = b"\x00" + cid.to_bytes()
    return b"\xd8\x2a\x58" + bytes([len(payload)]) + payload


def cbor_list_node(children: list[CID]) -> bytes:
    """A dag-cbor map {"l": [links...]} for up to 23 children: enough to test recursive pins."""
    assert len(children) < 24
    return b"\xa1\x61l" + bytes([0x80 | len(children)]) + b"".join(cbor_link(c) for c in children)


# ---------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ipfs_addr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    service = IpfsService(tmp_path_factory.mktemp("ipfs-client-home"))
    addr = service.start()
    try:
        yield addr
    finally:
        service.stop()


@pytest.fixture
def client(ipfs_addr: str) -> Iterator[IpfsClient]:
    with IpfsClient(ipfs_addr, timeout=30, block_timeout=1.5) as c:
        yield c


class TamperingProxy(http.server.ThreadingHTTPServer):
    """Forwards every RPC call to the daemon, flipping one byte of block/get and cat response bodies."""

    TAMPERED = ("/api/v0/block/get", "/api/v0/cat")

    def __init__(self, upstream: str) -> None:
        target = urlsplit(upstream)
        self.upstream_host = target.hostname or LOOPBACK
        self.upstream_port = target.port or 5001
        self.tampered_calls = 0
        super().__init__((LOOPBACK, 0), _ProxyHandler)


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    server: TamperingProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
        else:
            body = self.rfile.read(length) if length else b""
        upstream = http.client.HTTPConnection(self.server.upstream_host, self.server.upstream_port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "transfer-encoding")}
        headers["Content-Length"] = str(len(body))
        upstream.request("POST", self.path, body=body, headers=headers)
        reply = upstream.getresponse()
        data = reply.read()
        if reply.status == 200 and urlsplit(self.path).path in TamperingProxy.TAMPERED and data:
            data = bytes([data[0] ^ 0x01]) + data[1:]
            self.server.tampered_calls += 1
        self.send_response(reply.status)
        for key, value in reply.getheaders():
            if key.lower() not in ("transfer-encoding", "content-length", "connection"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        upstream.close()

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";")[0], 16)
            if size == 0:
                self.rfile.readline()
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline()


@pytest.fixture
def tampering(ipfs_addr: str) -> Iterator[tuple[IpfsClient, TamperingProxy]]:
    upstream = "http://" + ipfs_addr.strip("/").split("/")[1] + ":" + ipfs_addr.strip("/").split("/")[3]
    proxy = TamperingProxy(upstream)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        with IpfsClient(f"http://{LOOPBACK}:{proxy.server_address[1]}", timeout=30, block_timeout=1.5) as c:
            yield c, proxy
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join(timeout=5)


# ---------------------------------------------------------------------------
# addresses
# ---------------------------------------------------------------------------


def test_api_address_forms() -> None:
    assert api_multiaddr("/ip4/127.0.0.1/tcp/5001") == "/ip4/127.0.0.1/tcp/5001/http"
    assert api_multiaddr("/ip4/127.0.0.1/tcp/5001/http") == "/ip4/127.0.0.1/tcp/5001/http"
    assert api_multiaddr("http://127.0.0.1:5001") == "/ip4/127.0.0.1/tcp/5001/http"
    assert api_multiaddr("http://127.0.0.1:5001/api/v0/") == "/ip4/127.0.0.1/tcp/5001/http"
    assert api_multiaddr("http://localhost:5001") == "/dns/localhost/tcp/5001/http"
    assert api_multiaddr("http://[::1]:5001") == "/ip6/::1/tcp/5001/http"
    for bad in ("", "localhost:5001", "/ip4/127.0.0.1/udp/5001", "/ip4/127.0.0.1/tcp/x", "ftp://h:1", "http://h:1/x"):
        with pytest.raises(UsageError):
            IpfsClient(bad)


# ---------------------------------------------------------------------------
# CAR
# ---------------------------------------------------------------------------


def sample_blocks(n: int = 5) -> list[tuple[CID, bytes]]:
    blocks = [(CID.for_block(RAW, rand(100 + i, i)), rand(100 + i, i)) for i in range(n)]
    blocks.append((CID.for_block(DAG_PB, b"\x0a\x02\x08\x01", version=0), b"\x0a\x02\x08\x01"))
    root = cbor_list_node([cid for cid, _ in blocks])
    blocks.append((CID.for_block(DAG_CBOR, root), root))
    return blocks


def test_car_round_trip_bytes_and_stream() -> None:
    blocks = sample_blocks()
    roots = [blocks[-1][0], blocks[0][0]]
    data = car_bytes(roots, blocks)
    got_roots, got = read_car(data)
    assert got_roots == roots and list(got) == blocks
    stream = io.BytesIO()
    write_car(roots, iter(blocks), stream)
    stream.seek(0)
    got_roots, got = read_car(stream)
    assert got_roots == roots and list(got) == blocks
    assert read_car(car_bytes([], []))[0] == []


def test_car_header_is_canonical_dag_cbor() -> None:
    root = CID.parse("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku")
    header = encode_header([root])
    payload = b"\x00" + root.to_bytes()
    assert header == b"\xa2\x65roots\x81\xd8\x2a\x58" + bytes([len(payload)]) + payload + b"\x67version\x01"


def test_car_truncation_and_garbage_are_car_errors() -> None:
    blocks = sample_blocks(3)
    data = car_bytes([blocks[-1][0]], blocks)
    boundaries = {len(car_bytes([blocks[-1][0]], blocks[:k])) for k in range(len(blocks) + 1)}
    header_end = min(boundaries)
    for cut in range(len(data)):
        if cut in boundaries:  # a CAR cut between sections is a valid, shorter CAR
            _, got = read_car(data[:cut])
            assert len(list(got)) == sorted(boundaries).index(cut)
            continue
        with pytest.raises(CarError) as caught:
            if cut < header_end:
                read_car(data[:cut])
            else:
                list(read_car(data[:cut])[1])
        assert "\n" not in str(caught.value)
    carv2_pragma = bytes.fromhex("0aa16776657273696f6e02")
    not_cars = [
        b"",
        b"hello world",
        b'{"roots": []}',
        rand(300, 99),
        carv2_pragma,
        b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80",
    ]
    not_cars.append(encode_varint(5) + b"\xa1\x65roots\x80")  # no version
    not_cars.append(encode_varint(3) + b"\xa1\x61x\x01")  # wrong key
    for junk in not_cars:
        with pytest.raises(CarError):
            read_car(junk)
    with pytest.raises(CarError, match="CARv2"):
        read_car(carv2_pragma)


def test_car_tampered_block_is_a_mismatch() -> None:
    blocks = sample_blocks(3)
    data = bytearray(car_bytes([blocks[-1][0]], blocks))
    victim_cid, victim = blocks[1]
    offset = bytes(data).index(victim)
    data[offset + 10] ^= 0xFF
    _, got = read_car(bytes(data))
    assert next(got) == blocks[0]
    with pytest.raises(BlockMismatch) as caught:
        next(got)
    assert caught.value.cid == str(victim_cid)


def test_car_interop_with_daemon(client: IpfsClient, ipfs_addr: str) -> None:
    """Our CAR imports into the daemon, and the daemon's `dag export` reads back verified."""
    data = rand(3 * CHUNK_SIZE + 5, 7)
    blocks = list(iter_bytes_blocks(data))
    root = blocks[-1][0]
    client.put_blocks(blocks, pin_roots=[root])
    api = ipfshttpclient.Client(api_multiaddr(ipfs_addr), timeout=30)
    try:
        exported = api.dag.export(root.encode())
    finally:
        api.close()
    roots, got = read_car(exported)
    assert roots == [root]
    assert sorted(got) == sorted(blocks)


# ---------------------------------------------------------------------------
# blocks and pins
# ---------------------------------------------------------------------------


def test_put_blocks_batch_then_get_each(client: IpfsClient) -> None:
    # Valid dag-cbor (Kubo decodes every dag-cbor block it imports): a map holding random bytes.
    payloads = [encode({"r": rand(1000 + i, 1000 + i)}) for i in range(300)]
    blocks = [(CID.for_block(DAG_CBOR, b), b) for b in payloads]
    client.put_blocks(blocks)
    client.put_blocks(blocks)  # idempotent
    for cid, block in blocks:
        assert client.get_block(cid) == block
        assert client.get_block(cid.encode()) == block
    assert client.has_block(blocks[0][0])
    client.put_blocks([])


def test_put_blocks_pins_roots_recursively(client: IpfsClient) -> None:
    leaves = [(CID.for_block(RAW, b), b) for b in (rand(64, 2000 + i) for i in range(5))]
    root_block = cbor_list_node([cid for cid, _ in leaves])
    root = CID.for_block(DAG_CBOR, root_block)
    stray = (CID.for_block(RAW, rand(64, 2999)), rand(64, 2999))
    client.put_blocks([*leaves, stray, (root, root_block)], pin_roots=[root])
    assert client.is_pinned(root)
    assert all(client.is_pinned(cid) for cid, _ in leaves)  # indirectly, through the root
    assert not client.is_pinned(stray[0])
    client.pin(stray[0])
    assert client.is_pinned(stray[0])
    client.unpin(stray[0])
    assert not client.is_pinned(stray[0])
    assert not client.is_pinned(CID.for_block(RAW, b"never stored"))


def test_pin_direct_accepts_blocks_already_pinned_recursively(client: IpfsClient) -> None:
    held = (CID.for_block(RAW, rand(64, 2500)), rand(64, 2500))
    fresh = (CID.for_block(RAW, rand(64, 2501)), rand(64, 2501))
    client.put_blocks([held], pin_roots=[held[0]])
    client.put_blocks([fresh])
    client.pin_direct([held[0], fresh[0]])  # a daemon may refuse the request as a whole: the others still get pinned
    assert client.is_pinned(held[0]) and client.is_pinned(fresh[0])


def test_put_blocks_refuses_a_block_that_does_not_match(client: IpfsClient) -> None:
    good = rand(50, 3000)
    cid = CID.for_block(RAW, good)
    with pytest.raises(BlockMismatch) as caught:
        client.put_blocks([(cid, good[:-1] + b"!")])
    assert caught.value.cid == str(cid)
    assert not client.has_block(cid)  # nothing was sent
    client.put_blocks([(cid, good)])
    assert client.get_block(cid) == good


@pytest.mark.parametrize("codec", [RAW, DAG_CBOR, DAG_PB])
def test_put_block_returns_verified_cid(client: IpfsClient, codec: int) -> None:
    data = rand(200, 4000 + codec)
    cid = client.put_block(data, codec)
    assert cid == CID.for_block(codec, data)
    assert client.get_block(cid) == data


def test_missing_block_is_not_found_quickly(client: IpfsClient) -> None:
    missing = CID.for_block(RAW, b"nobody stored this")
    started = time.monotonic()
    with pytest.raises(BlockNotFound) as caught:
        client.get_block(missing)
    assert caught.value.cid == str(missing)
    assert time.monotonic() - started < client.block_timeout + 5
    assert not client.has_block(missing)
    with pytest.raises(BlockNotFound):
        client.cat(missing)


def test_pin_of_missing_dag_is_not_found(ipfs_addr: str) -> None:
    missing = CID.for_block(RAW, b"also never stored")
    with IpfsClient(ipfs_addr, timeout=1.5) as short, pytest.raises(BlockNotFound):
        short.pin(missing)


def test_invalid_cids_are_rejected_before_any_request(tmp_path: Path) -> None:
    client = IpfsClient(f"/ip4/{LOOPBACK}/tcp/{free_port()}")  # nothing listens: no request may be made
    calls: list[Callable[[str], object]] = [
        client.get_block,
        client.cat,
        client.iter_file,
        client.is_pinned,
        client.pin,
        lambda text: client.fetch_file(text, tmp_path / "out"),
    ]
    for garbage in ("", "garbage", "Qm" + "1" * 44, "bafy!!", "zzzz", "/ipfs/", "f0155"):
        for call in calls:
            with pytest.raises(InvalidCid):
                call(garbage)
    assert list(tmp_path.iterdir()) == []
    client.close()


def test_unreachable_daemon_is_ipfs_unavailable(tmp_path: Path) -> None:
    port = free_port()
    cid = CID.for_block(RAW, b"x")
    with IpfsClient(f"/ip4/{LOOPBACK}/tcp/{port}", timeout=5) as client:
        calls: list[Callable[[], object]] = [
            client.version,
            lambda: client.get_block(cid),
            lambda: client.put_blocks([(cid, b"x")]),
            lambda: client.put_block(b"x", RAW),
            lambda: client.add_bytes(b"x"),
            lambda: client.fetch_file(cid, tmp_path / "out"),
            lambda: client.is_pinned(cid),
        ]
        for call in calls:
            with pytest.raises(IpfsUnavailable) as caught:
                call()
            message = str(caught.value)
            assert "\n" not in message and str(port) in message
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 11, CHUNK_SIZE, 5 * CHUNK_SIZE + 17])
def test_add_and_fetch_files(client: IpfsClient, tmp_path: Path, size: int) -> None:
    data = rand(size, 5000 + size)
    source = tmp_path / "source.bin"
    source.write_bytes(data)
    cid = client.add_file(source)
    assert cid.encode() == cid_for_file(source)
    assert client.is_pinned(cid)
    assert client.add_bytes(data) == cid
    assert client.cat(cid) == data
    dest = tmp_path / "dest.bin"
    client.fetch_file(cid, dest)
    assert dest.read_bytes() == data
    assert dest.stat().st_mode & 0o777 == 0o666 & ~_umask()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest.bin", "source.bin"]


def test_fetch_two_level_file_and_v0_dag(client: IpfsClient, tmp_path: Path) -> None:
    """A file with more than 174 chunks (two interior levels), and a CIDv0 DAG of dag-pb leaves."""
    data = rand(MAX_LINKS * CHUNK_SIZE + 3 * CHUNK_SIZE + 1, 6000)
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    cid = client.add_file(source)
    dest = tmp_path / "big.out"
    client.fetch_file(cid, dest)
    assert dest.read_bytes() == data
    small = rand(4 * CHUNK_SIZE + 3, 6001)
    blocks = list(iter_bytes_blocks(small, version=0))
    root = blocks[-1][0]
    assert root.encode() == cid_for_bytes(small, version=0)
    client.put_blocks(blocks, pin_roots=[root])
    assert client.cat(root) == small
    assert client.cat(root.encode()) == small


def test_fetching_a_non_file_is_a_unixfs_error(client: IpfsClient, tmp_path: Path) -> None:
    block = cbor_list_node([])
    cid = client.put_block(block, DAG_CBOR)
    with pytest.raises(UnixFSError):
        client.fetch_file(cid, tmp_path / "x")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------
# a daemon that lies
# ---------------------------------------------------------------------------


def test_tampered_block_get_is_a_mismatch(client: IpfsClient, tampering: tuple[IpfsClient, TamperingProxy]) -> None:
    liar, proxy = tampering
    assert liar.version() == client.version()  # untouched calls pass through
    data = rand(500, 7000)
    cid = client.put_block(data, RAW)
    with pytest.raises(BlockMismatch) as caught:
        liar.get_block(cid)
    assert caught.value.cid == str(cid)
    assert proxy.tampered_calls == 1


@pytest.mark.parametrize("size", [100, 3 * CHUNK_SIZE + 9])
def test_tampered_file_content_is_a_mismatch(
    client: IpfsClient, tampering: tuple[IpfsClient, TamperingProxy], tmp_path: Path, size: int
) -> None:
    liar, proxy = tampering
    data = rand(size, 8000 + size)
    cid = client.add_bytes(data)
    requested = cid.encode()
    with pytest.raises(BlockMismatch) as caught:
        liar.cat(requested)
    assert caught.value.cid == requested
    dest = tmp_path / "victim.bin"
    with pytest.raises(BlockMismatch) as caught:
        liar.fetch_file(requested, dest)
    assert caught.value.cid == requested
    assert not dest.exists() and list(tmp_path.iterdir()) == []
    # An existing file under the destination name is left untouched.
    dest.write_bytes(b"previous content")
    with pytest.raises(BlockMismatch):
        liar.fetch_file(cid, dest)
    assert dest.read_bytes() == b"previous content"
    assert list(tmp_path.iterdir()) == [dest]
    assert proxy.tampered_calls == 3
    # The same content through the honest daemon is fine.
    client.fetch_file(cid, dest)
    assert dest.read_bytes() == data


def test_tampering_proxy_really_flips_cat(ipfs_addr: str, tampering: tuple[IpfsClient, TamperingProxy]) -> None:
    """The proxy corrupts /api/v0/cat too, so no code path may rely on trusting `cat`."""
    liar, proxy = tampering
    with IpfsClient(ipfs_addr) as honest:
        cid = honest.add_bytes(b"cat me")
    raw = ipfshttpclient.Client(f"/ip4/{LOOPBACK}/tcp/{proxy.server_address[1]}/http", timeout=30)
    try:
        assert raw.cat(cid.encode()) != b"cat me"
    finally:
        raw.close()
    with pytest.raises(BlockMismatch):
        liar.cat(cid)  # walks block/get, which the proxy corrupts as well


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_fetch_file_temp_is_cleaned_on_interrupt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever stops the walk (here KeyboardInterrupt mid-file), no partial file remains."""
    client = IpfsClient(f"/ip4/{LOOPBACK}/tcp/{free_port()}")

    def pieces(_: object) -> Iterator[bytes]:
        yield b"first part"
        raise KeyboardInterrupt

    monkeypatch.setattr(client, "iter_file", pieces)
    with pytest.raises(KeyboardInterrupt):
        client.fetch_file(CID.for_block(RAW, b"x"), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []
    client.close()


def test_os_error_paths(tmp_path: Path) -> None:
    client = IpfsClient(f"/ip4/{LOOPBACK}/tcp/{free_port()}")
    with pytest.raises(UsageError):
        client.add_file(tmp_path / "missing")
    with pytest.raises(UsageError):
        client.add_file(tmp_path)
    client.close()
    assert os.listdir(tmp_path) == []


def test_put_blocks_with_incomplete_pinned_dag_fails_cleanly(ipfs_addr: str) -> None:
    """Pinning a root whose linked block is absent cannot succeed; it must fail in bounded time, typed."""
    absent = CID.for_block(RAW, b"linked but never uploaded")
    root_block = cbor_list_node([absent])
    root = CID.for_block(DAG_CBOR, root_block)
    started = time.monotonic()
    with IpfsClient(ipfs_addr, timeout=2) as short, pytest.raises(IpfsError) as caught:
        short.put_blocks([(root, root_block)], pin_roots=[root])
    assert time.monotonic() - started < 15
    assert "\n" not in str(caught.value) and str(root) in str(caught.value)
