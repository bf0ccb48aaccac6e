"""Code identity: which program (and script) made a change, and the `code_hash` rule.

A record names the code that wrote the data by content, not by name: the
executable's SHA-256, the interpreted script's SHA-256 when there is one, the
argv and the container image. ``code_hash`` condenses that into one 32-byte value
so that all changes made by the same code can be found with one equality test,
even when the `code` field itself is hidden behind a commitment.

The rule, which a verifier repeats by re-encoding the record's ``code`` field::

    code_hash = SHA-256(canonical DAG-CBOR of the code map exactly as in the record)
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from provanchor.codec.dagcbor import DagCborError, encode
from provanchor.errors import RecordError

__all__ = [
    "CodeFile",
    "CodeIdentity",
    "code_hash",
    "identify_command",
    "interpreter_family",
    "sha256_file",
]

_HASH_SIZE = 32
_CHUNK = 1 << 20

# Interpreters, by basename of the executable; versioned names (python3.11,
# perl5.36, ruby3.1) count. For each family, the options after which the code
# comes from argv or a module rather than a script file.
_FAMILIES: tuple[tuple[str, re.Pattern[str], frozenset[str]], ...] = (
    ("python", re.compile(r"python[0-9.]*"), frozenset({"-c", "-m"})),
    ("sh", re.compile(r"(?:ba|da|z)?sh"), frozenset({"-c"})),
    ("perl", re.compile(r"perl[0-9.]*"), frozenset({"-e", "-E"})),
    ("ruby", re.compile(r"ruby[0-9.]*"), frozenset({"-e"})),
    ("node", re.compile(r"node(?:js)?"), frozenset({"-e", "--eval", "-p", "--print"})),
)


def _check_digest(value: object, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != _HASH_SIZE:
        raise RecordError(f"{what} must be 32 bytes (SHA-256), got {value!r:.80}", field=what)
    return value


def _check_text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise RecordError(f"{what} must be a non-empty string, got {value!r:.80}", field=what)
    return value


@dataclass(frozen=True, slots=True)
class CodeFile:
    """A file that is code (executable or script): its resolved path and SHA-256."""

    path: str
    sha256: bytes

    def __post_init__(self) -> None:
        _check_text(self.path, "path")
        _check_digest(self.sha256, "sha256")

    def to_wire(self) -> dict[str, object]:
        return {"path": self.path, "sha256": self.sha256}

    @classmethod
    def from_wire(cls, wire: object) -> CodeFile:
        if not isinstance(wire, dict) or set(wire) != {"path", "sha256"}:
            raise RecordError(f"a code file is a map with exactly 'path' and 'sha256', got {wire!r:.120}")
        return cls(path=wire["path"], sha256=wire["sha256"])


@dataclass(frozen=True)
class CodeIdentity:
    """What ran: executable, script(s), argv and container image (the record's `code`).

    ``exe`` is None when the executable could not be read; ``scripts`` holds the
    interpreted script (at most one today); ``image`` names the container image
    (e.g. ``registry/name@sha256:...``) or is None outside containers.
    """

    exe: CodeFile | None
    scripts: tuple[CodeFile, ...] = ()
    argv: tuple[str, ...] = ()
    image: str | None = None

    def __post_init__(self) -> None:
        if self.exe is not None and not isinstance(self.exe, CodeFile):
            raise RecordError(f"exe must be a CodeFile or None, got {self.exe!r:.80}", field="exe")
        scripts = self.scripts
        if isinstance(scripts, list):
            object.__setattr__(self, "scripts", scripts := tuple(scripts))
        if not isinstance(scripts, tuple) or not all(isinstance(s, CodeFile) for s in scripts):
            raise RecordError(f"scripts must be a sequence of CodeFile, got {scripts!r:.80}", field="scripts")
        argv = self.argv
        if isinstance(argv, list):
            object.__setattr__(self, "argv", argv := tuple(argv))
        if not isinstance(argv, tuple) or not all(isinstance(a, str) for a in argv):
            raise RecordError(f"argv must be a sequence of strings, got {argv!r:.80}", field="argv")
        if self.image is not None:
            _check_text(self.image, "image")

    def to_wire(self) -> dict[str, object]:
        return {
            "exe": None if self.exe is None else self.exe.to_wire(),
            "scripts": [s.to_wire() for s in self.scripts],
            "argv": list(self.argv),
            "image": self.image,
        }

    @classmethod
    def from_wire(cls, wire: object) -> CodeIdentity:
        if not isinstance(wire, dict) or set(wire) != {"exe", "scripts", "argv", "image"}:
            raise RecordError(f"code must be a map with exactly exe, scripts, argv, image; got {wire!r:.120}")
        scripts, argv = wire["scripts"], wire["argv"]
        if not isinstance(scripts, list):
            raise RecordError(f"scripts must be a list, got {scripts!r:.80}", field="scripts")
        if not isinstance(argv, list):
            raise RecordError(f"argv must be a list, got {argv!r:.80}", field="argv")
        exe = wire["exe"]
        return cls(
            exe=None if exe is None else CodeFile.from_wire(exe),
            scripts=tuple(CodeFile.from_wire(s) for s in scripts),
            argv=tuple(argv),
            image=wire["image"],
        )

    @cached_property
    def digest(self) -> bytes:
        """The code_hash of this identity, computed once per object (records reuse identities)."""
        try:
            return hashlib.sha256(encode(self.to_wire())).digest()
        except DagCborError as exc:
            raise RecordError(f"code cannot be encoded: {exc}", field="argv") from exc


def code_hash(code: CodeIdentity) -> bytes:
    """SHA-256 of the canonical DAG-CBOR of the `code` map exactly as it appears in the record."""
    return code.digest


def sha256_file(path: str | os.PathLike[str]) -> bytes:
    """SHA-256 of a file's contents, read in chunks so big executables cost no memory."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").digest()


def _text(value: str | bytes) -> str:
    """Make any argv item or path encodable: undecodable bytes become ``\\xNN`` escapes.

    Linux names and arguments are bytes; Python shows undecodable ones as lone
    surrogates, which UTF-8 (and so DAG-CBOR) cannot carry.
    """
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    try:
        raw = value.encode("utf-8", errors="surrogateescape")
    except UnicodeEncodeError:
        raw = value.encode("utf-8", errors="backslashreplace")
    return raw.decode("utf-8", errors="backslashreplace")


def interpreter_family(exe_path: str | os.PathLike[str]) -> str | None:
    """The interpreter family ("python", "sh", "perl", "ruby", "node") of an executable, or None."""
    name = os.path.basename(os.fsdecode(exe_path))
    for family, pattern, _ in _FAMILIES:
        if pattern.fullmatch(name):
            return family
    return None


def _inline_options(family: str) -> frozenset[str]:
    return next(options for name, _, options in _FAMILIES if name == family)


def _script_candidate(argv: Sequence[str], cwd: str, inline: frozenset[str]) -> str | None:
    """The first non-option argument after argv[0] that is an existing regular file."""
    options_done = False
    for arg in argv[1:]:
        if not options_done:
            if arg == "--":
                options_done = True
                continue
            if arg in inline or arg == "-":
                return None  # python -m / -c, sh -c, perl -e, "-" (stdin): no script file
            if arg.startswith("-"):
                continue
        candidate = os.path.realpath(os.path.join(cwd, arg))
        if os.path.isfile(candidate):
            return candidate
    return None


def identify_command(
    exe_path: str | os.PathLike[str],
    argv: Sequence[str | bytes],
    cwd: str | os.PathLike[str],
    image: str | None = None,
) -> CodeIdentity:
    """Describe a command by content: hash the resolved executable and, for interpreters, the script.

    ``exe_path`` is resolved against ``cwd`` and through symlinks (``realpath``);
    it counts as an interpreter when its given or resolved basename matches one
    (so ``/usr/bin/python3 -> python3.11`` and ``/bin/sh -> dash`` both do). The
    script is the first argument after argv[0] that is not an option (``-x``,
    ``--x``; everything after ``--`` counts) and names an existing regular file,
    resolved against ``cwd``; an inline-code option met first (``-c``, ``-m``,
    ``-e``...) means there is no script. Unreadable files are left out rather
    than guessed: ``exe`` becomes None, a script is omitted; argv is always kept.
    """
    cwd_text = os.fsdecode(cwd)
    given = os.fsdecode(exe_path)
    resolved = os.path.realpath(os.path.join(cwd_text, given))
    try:
        exe: CodeFile | None = CodeFile(_text(resolved), sha256_file(resolved))
    except OSError:
        exe = None
    args = [_text(arg) for arg in argv]
    scripts: list[CodeFile] = []
    family = interpreter_family(given) or interpreter_family(resolved)
    if family is not None:
        raw_args = [os.fsdecode(arg) for arg in argv]
        script = _script_candidate(raw_args, cwd_text, _inline_options(family))
        if script is not None:
            with contextlib.suppress(OSError):
                scripts.append(CodeFile(_text(script), sha256_file(script)))
    return CodeIdentity(exe=exe, scripts=tuple(scripts), argv=tuple(args), image=image)
