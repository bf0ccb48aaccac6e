"""Code identity: which program (and script) made a change, and the `code_hash` rule.

A record names the code that wrote the data by content, not by name: the
executable's SHA-256, the interpreted script's (or ``python -m`` module's)
SHA-256 when there is one, and the container image. ``code_hash`` condenses
that into one 32-byte value so that everything one program, at one version,
ever wrote is found with one equality test, whatever its arguments, and even
when the `code` field itself is hidden behind a commitment. How the program was
called (paths, argv, working directory) is the record's separate, signed
`invocation`.

The rule (record version 2), which a verifier repeats by re-encoding the
record's ``code`` field::

    code_hash = SHA-256(canonical DAG-CBOR of {"exe": sha256 | null, "scripts": [sha256, ...], "image": text | null})

Version 1 records hashed their whole `code` map, paths and argv included; they
still decode and verify by that rule (`CodeIdentity.legacy_digest`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

from provanchor.errors import RecordError
from provanchor.formats.dagcbor import DagCborError, encode

__all__ = [
    "CodeFile",
    "CodeIdentity",
    "code_hash",
    "identify_command",
    "interpreter_family",
    "python_module_argument",
    "resolve_module",
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
    """What ran and how it was called: executable, script(s), container image; argv and working directory.

    Two parts with different jobs. The **code** is what the program *is*: the
    SHA-256 of the executable, of each script or module, and the image digest;
    `code_hash` hashes only that, so every call of one program at one version
    shares a hash. The **invocation** is how it was called: the files' paths,
    argv and the working directory. A version-2 record carries them as its
    `code` and `invocation` fields (both signed); a version-1 record carried one
    `code` map with paths and argv, hashed whole (`legacy_wire`).

    ``exe`` is None when the executable could not be read; ``scripts`` holds the
    interpreted script or the module ``python -m`` resolved (at most one today);
    ``image`` names the container image (``registry/name@sha256:...``) or is None.
    """

    exe: CodeFile | None
    scripts: tuple[CodeFile, ...] = ()
    argv: tuple[str, ...] = ()
    image: str | None = None
    cwd: str | None = None

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
        if self.cwd is not None:
            _check_text(self.cwd, "cwd")

    # ------------------------------------------------------------ wire forms

    def code_wire(self) -> dict[str, object]:
        """Version 2 `code`: what the program is, by content only (this is what `code_hash` hashes)."""
        return {
            "exe": None if self.exe is None else self.exe.sha256,
            "scripts": [s.sha256 for s in self.scripts],
            "image": self.image,
        }

    def invocation_wire(self) -> dict[str, object]:
        """Version 2 `invocation`: how it was called (paths of the code files, argv, working directory)."""
        return {
            "exe": None if self.exe is None else self.exe.path,
            "scripts": [s.path for s in self.scripts],
            "argv": list(self.argv),
            "cwd": self.cwd,
        }

    def to_wire(self) -> dict[str, object]:
        """Both parts, `{"code": ..., "invocation": ...}`: what a commitment to a record's code hides."""
        return {"code": self.code_wire(), "invocation": self.invocation_wire()}

    def legacy_wire(self) -> dict[str, object]:
        """Version 1 `code`: paths, hashes, argv and image in one map (no working directory)."""
        return {
            "exe": None if self.exe is None else self.exe.to_wire(),
            "scripts": [s.to_wire() for s in self.scripts],
            "argv": list(self.argv),
            "image": self.image,
        }

    @classmethod
    def from_wire(cls, code: object, invocation: object) -> CodeIdentity:
        """A version 2 record's `code` and `invocation` maps, strictly (their files must pair up)."""
        if not isinstance(code, dict) or set(code) != {"exe", "scripts", "image"}:
            raise RecordError(f"code must be a map with exactly exe, scripts, image; got {code!r:.120}")
        if not isinstance(invocation, dict) or set(invocation) != {"exe", "scripts", "argv", "cwd"}:
            raise RecordError(
                f"invocation must be a map with exactly exe, scripts, argv, cwd; got {invocation!r:.120}",
                field="invocation",
            )
        hashes, paths, argv = code["scripts"], invocation["scripts"], invocation["argv"]
        if not isinstance(hashes, list) or not isinstance(paths, list) or len(hashes) != len(paths):
            raise RecordError("code.scripts and invocation.scripts must be lists of the same length", field="scripts")
        if not isinstance(argv, list):
            raise RecordError(f"argv must be a list, got {argv!r:.80}", field="argv")
        exe_hash, exe_path = code["exe"], invocation["exe"]
        if (exe_hash is None) != (exe_path is None):
            raise RecordError("code.exe and invocation.exe must both be null or both be set", field="exe")
        return cls(
            exe=None if exe_hash is None else CodeFile(exe_path, exe_hash),
            scripts=tuple(CodeFile(path, digest) for path, digest in zip(paths, hashes, strict=True)),
            argv=tuple(argv),
            image=code["image"],
            cwd=invocation["cwd"],
        )

    @classmethod
    def from_legacy_wire(cls, wire: object) -> CodeIdentity:
        """A version 1 record's `code` map."""
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

    # ------------------------------------------------------------ hashes

    @cached_property
    def digest(self) -> bytes:
        """The code_hash (version 2): SHA-256 of the canonical `code` map, computed once per object."""
        return _sha256_of(self.code_wire(), "exe")

    @cached_property
    def legacy_digest(self) -> bytes:
        """The code_hash of a version 1 record: SHA-256 of the whole v1 `code` map (argv included)."""
        return _sha256_of(self.legacy_wire(), "argv")

    def digest_for(self, version: int) -> bytes:
        return self.legacy_digest if version == 1 else self.digest

    @property
    def program(self) -> CodeFile | None:
        """The file that *is* the program: the script or module for an interpreter, else the executable."""
        return self.scripts[0] if self.scripts else self.exe


def _sha256_of(wire: dict[str, object], field_name: str) -> bytes:
    try:
        return hashlib.sha256(encode(wire)).digest()
    except DagCborError as exc:
        raise RecordError(f"code cannot be encoded: {exc}", field=field_name) from exc


def code_hash(code: CodeIdentity, version: int = 2) -> bytes:
    """SHA-256 of the canonical DAG-CBOR of the record's `code` map (version 2: content only)."""
    return code.digest_for(version)


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


def python_module_argument(argv: Sequence[str]) -> str | None:
    """The module of ``python [options] -m MODULE`` (or ``-mMODULE``), if that is how the code is given."""
    for arg in argv[1:]:
        if arg == "-m":
            index = list(argv).index(arg)
            return argv[index + 1] if index + 1 < len(argv) else None
        if arg.startswith("-m") and not arg.startswith("--"):
            return arg[2:]
        if arg in ("-c", "-", "--") or not arg.startswith("-"):
            return None  # inline code, stdin, or a script: not a module
    return None


_PYTHON_VERSION = re.compile(r"python(\d+\.\d+)")


def _python_search_path(given: str, resolved: str, cwd: str, environ: Mapping[str, str]) -> list[str]:
    """Where ``python -m`` looks, in the interpreter's order: the working directory, PYTHONPATH, then the
    interpreter's own library and site-packages (of a virtual environment too, found by its bin/ path)."""
    roots = [cwd]
    roots += [os.path.join(cwd, entry) for entry in environ.get("PYTHONPATH", "").split(os.pathsep) if entry]
    version = next(
        (m.group(1) for name in (given, resolved) if (m := _PYTHON_VERSION.search(os.path.basename(name)))), None
    )
    prefixes = dict.fromkeys(os.path.dirname(os.path.dirname(path)) for path in (os.path.join(cwd, given), resolved))
    for prefix in prefixes:
        if version is not None:
            library = os.path.join(prefix, "lib", f"python{version}")
            roots += [library, os.path.join(library, "site-packages"), os.path.join(library, "dist-packages")]
        roots.append(os.path.join(prefix, "lib", "python3", "dist-packages"))
    return roots


def resolve_module(module: str, roots: Sequence[str]) -> str | None:
    """The file ``python -m MODULE`` runs: ``a/b.py``, or ``a/b/__main__.py`` for a package, first root wins."""
    parts = module.split(".")
    if not module or not all(part.isidentifier() for part in parts):
        return None
    for root in roots:
        base = os.path.join(root, *parts)
        for candidate in (base + ".py", os.path.join(base, "__main__.py")):
            if os.path.isfile(candidate):
                return os.path.realpath(candidate)
    return None


def identify_command(
    exe_path: str | os.PathLike[str],
    argv: Sequence[str | bytes],
    cwd: str | os.PathLike[str],
    image: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> CodeIdentity:
    """Describe a command by content: hash the resolved executable and, for interpreters, the script.

    ``exe_path`` is resolved against ``cwd`` and through symlinks (``realpath``);
    it counts as an interpreter when its given or resolved basename matches one
    (so ``/usr/bin/python3 -> python3.11`` and ``/bin/sh -> dash`` both do). The
    script is the first argument after argv[0] that is not an option (``-x``,
    ``--x``; everything after ``--`` counts) and names an existing regular file,
    resolved against ``cwd``; an inline-code option met first (``-c``, ``-e``...)
    means there is no script. ``python -m MODULE`` hashes the module file the
    interpreter would run (see `resolve_module`; ``environ`` supplies PYTHONPATH,
    default this process's). Unreadable files are left out rather than guessed:
    ``exe`` becomes None, a script is omitted; argv and cwd are always kept.
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
        if script is None and family == "python" and (module := python_module_argument(raw_args)) is not None:
            env = os.environ if environ is None else environ
            script = resolve_module(module, _python_search_path(given, resolved, cwd_text, env))
        if script is not None:
            with contextlib.suppress(OSError):
                scripts.append(CodeFile(_text(script), sha256_file(script)))
    return CodeIdentity(exe=exe, scripts=tuple(scripts), argv=tuple(args), image=image, cwd=_text(cwd_text))
