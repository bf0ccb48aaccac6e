"""The environment variables a run record digests: which ones, and how.

A recorded run stores a digest of the variables that change what a program
computes (their values are not stored: they may hold secrets); a replay
computes the same digest to say whether the environment matches. Both sides
use this one definition.
"""

from __future__ import annotations

import hashlib

__all__ = ["ENV_THAT_MATTERS", "env_digest"]

# Variables that change what a program computes; their values are digested, not stored.
ENV_THAT_MATTERS = (
    "PATH",
    "PYTHONPATH",
    "PYTHONHASHSEED",
    "LD_LIBRARY_PATH",
    "LD_PRELOAD",
    "LANG",
    "LC_ALL",
    "TZ",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "CUDA_VISIBLE_DEVICES",
    "VIRTUAL_ENV",
    "CONDA_PREFIX",
    "NODE_PATH",
    "JAVA_HOME",
    "R_LIBS",
)


def env_digest(environ: dict[str, str]) -> tuple[str, list[str]]:
    names = sorted(name for name in ENV_THAT_MATTERS if name in environ)
    digest = hashlib.sha256("\n".join(f"{n}={environ[n]}" for n in names).encode()).hexdigest()
    return digest, names
