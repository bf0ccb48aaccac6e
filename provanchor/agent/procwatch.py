"""The process-connector listener, run as its own process by `ProcessTable`.

Prints one JSON line per process exec (and per fork, inheriting the parent's
description) with what /proc says about it at that moment, and one line per
exit. The first line is a hello, or an error on stderr and exit status 1 when
the connector cannot be used (not root, no CONFIG_PROC_EVENTS).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import sys
from dataclasses import asdict, replace

from provanchor.agent.capture import ProcessInfo
from provanchor.agent.capture.procinfo import inspect_process

_NETLINK_CONNECTOR = 11
_CN_IDX_PROC = 1
_CN_VAL_PROC = 1
_NLMSG_DONE = 3
_PROC_CN_MCAST_LISTEN = 1
_PROC_EVENT_FORK = 0x00000001
_PROC_EVENT_EXEC = 0x00000002
_PROC_EVENT_EXIT = 0x80000000
_NLMSGHDR = struct.Struct("=IHHII")
_CN_MSG = struct.Struct("=IIIIHH")
_PROC_EVENT_HEADER = struct.Struct("=IIQ")
_TWO_PIDS = struct.Struct("=ii")
_FOUR_PIDS = struct.Struct("=iiii")


def subscribe() -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_CONNECTOR)
    sock.bind((0, _CN_IDX_PROC))
    payload = struct.pack("=I", _PROC_CN_MCAST_LISTEN)
    cn = _CN_MSG.pack(_CN_IDX_PROC, _CN_VAL_PROC, 0, 0, len(payload), 0) + payload
    sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(cn), _NLMSG_DONE, 0, 0, os.getpid()) + cn)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
    return sock


def emit(info: ProcessInfo | dict[str, object]) -> None:
    data = asdict(info) if isinstance(info, ProcessInfo) else info
    os.write(1, (json.dumps(data, separators=(",", ":")) + "\n").encode())


def main() -> int:
    try:
        sock = subscribe()
    except OSError as exc:
        print(f"process connector unavailable: {exc.strerror or exc}", file=sys.stderr)
        return 1
    # Races against exiting processes are won by being scheduled first; we mostly sleep.
    with contextlib.suppress(OSError):
        os.nice(-20)
    emit({"hello": True, "pid": os.getpid()})
    known: dict[int, ProcessInfo] = {}
    me = os.getpid()
    while True:
        try:
            data = sock.recv(262144)
        except OSError:
            continue  # ENOBUFS: some events were lost; the agent falls back to /proc
        offset = 0
        while offset + _NLMSGHDR.size <= len(data):
            length = _NLMSGHDR.unpack_from(data, offset)[0]
            if length < _NLMSGHDR.size:
                break
            event = data[offset + _NLMSGHDR.size + _CN_MSG.size : offset + length]
            offset += (length + 3) & ~3
            if len(event) < _PROC_EVENT_HEADER.size + 8:
                continue
            what = _PROC_EVENT_HEADER.unpack_from(event)[0]
            body = _PROC_EVENT_HEADER.size
            if what == _PROC_EVENT_EXEC:
                pid, tgid = _TWO_PIDS.unpack_from(event, body)
                if pid == tgid and tgid != me:
                    info = inspect_process(tgid)
                    known[tgid] = info
                    emit(info)
            elif what == _PROC_EVENT_FORK and len(event) >= body + 16:
                _, parent, child_pid, child = _FOUR_PIDS.unpack_from(event, body)
                if child_pid == child and parent != me:
                    if parent not in known:  # a process started before the listener: it is alive now
                        known[parent] = inspect_process(parent)
                    info = replace(known[parent], pid=child)
                    known[child] = info
                    emit({**asdict(info), "ppid": parent})
            elif what == _PROC_EVENT_EXIT:
                pid, tgid = _TWO_PIDS.unpack_from(event, body)
                if pid == tgid and known.pop(tgid, None) is not None:
                    emit({"pid": tgid, "exit": True})


if __name__ == "__main__":
    raise SystemExit(main())
