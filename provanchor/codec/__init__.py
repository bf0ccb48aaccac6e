"""Byte codecs whose output is hashed, so every value has exactly one encoding."""

from __future__ import annotations

from provanchor.codec.dagcbor import DagCborError, decode, encode

__all__ = ["DagCborError", "decode", "encode"]
