"""Tree scorers: LightGBM's own Booster, or the same trees compiled by lleaves.

lleaves turns model.txt into native code with LLVM (~10x faster than
``Booster.predict`` on a 200-row request here, and the call releases the GIL).
Compiling takes seconds to a minute for a few hundred trees, so the object code is
cached with the artifact, under ``<artifact>/compiled/``, named by everything it
depends on: model.txt's checksum, the lleaves and llvmlite versions, and the CPU
(lleaves specialises for the host CPU; another CPU gets its own file). A cache entry
is written to a temp file and renamed, so a crash never leaves half a file behind.
When the artifact directory is read-only the cache goes to ``$XDG_CACHE_HOME``
(``~/.cache``) ``/couponrank/compiled``.

``couponrank train`` compiles the new artifact, so a server starting on it finds the
cache; a server that finds none compiles before it starts serving.
tests/test_scorer.py holds the compiled scorer to Booster.predict within 1e-9.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from couponrank.training.artifact import Artifact

log = logging.getLogger(__name__)

SCORERS = ("auto", "lleaves", "booster")


class BoosterScorer:
    """LightGBM's Booster.predict, one thread (requests are small and many run at once)."""

    name = "booster"

    def __init__(self, booster):
        self.booster = booster

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.predict(X, raw_score=True, num_threads=1), dtype=np.float64)


class CompiledScorer:
    """The model compiled by lleaves (raw scores, float64 throughout)."""

    name = "lleaves"

    def __init__(self, model, path: Path):
        self.model = model
        self.path = path

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.model.predict(np.ascontiguousarray(X, dtype=np.float64), n_jobs=1)


def _cache_name(artifact: Artifact) -> str:
    from importlib.metadata import version

    from llvmlite import binding as llvm

    model_sha = artifact.metadata.get("checksums", {}).get("model.txt") or hashlib.sha256(
        artifact.model_file.read_bytes()).hexdigest()
    cpu = llvm.get_host_cpu_name()
    cpu_features = hashlib.sha256(llvm.get_host_cpu_features().flatten().encode()).hexdigest()[:8]
    return f"{model_sha[:16]}-lleaves{version('lleaves')}-llvmlite{version('llvmlite')}-{cpu}-{cpu_features}.o"


def cache_dirs(artifact: Artifact) -> list[Path]:
    """Where a compiled model is looked for, in order; the first writable one gets new entries."""
    user = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "couponrank" / "compiled"
    return [artifact.path / "compiled", user]


def compile_artifact(artifact: Artifact) -> Path:
    """The compiled model's path: found in a cache, or compiled now and cached."""
    import lleaves

    name = _cache_name(artifact)
    for directory in cache_dirs(artifact):
        if (directory / name).is_file():
            return directory / name
    started = time.perf_counter()
    for directory in cache_dirs(artifact):
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=".compiling-", suffix=".o")
        except OSError:
            continue  # read-only: try the next place
        os.close(fd)
        os.unlink(tmp)  # lleaves writes the cache only when the file does not exist
        try:
            lleaves.Model(model_file=str(artifact.model_file)).compile(cache=tmp, raw_score=True)
            os.replace(tmp, directory / name)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        log.info("compiled %s with lleaves in %.1f s -> %s", artifact.version, time.perf_counter() - started,
                 directory / name)
        return directory / name
    raise OSError(f"no writable cache directory for the compiled model (tried {', '.join(map(str, cache_dirs(artifact)))})")


def load_compiled(artifact: Artifact) -> CompiledScorer:
    import lleaves

    path = compile_artifact(artifact)
    model = lleaves.Model(model_file=str(artifact.model_file))
    model.compile(cache=str(path), raw_score=True)
    return CompiledScorer(model, path)


def make_scorer(artifact: Artifact, booster, kind: str = "auto"):
    """``lleaves``: compiled (errors propagate); ``booster``: LightGBM; ``auto``:
    compiled, or the Booster with a warning when compiling fails."""
    if kind not in SCORERS:
        raise ValueError(f"scorer must be one of {', '.join(SCORERS)}, got {kind!r}")
    if kind == "booster":
        return BoosterScorer(booster)
    try:
        return load_compiled(artifact)
    except Exception as exc:
        if kind == "lleaves":
            raise
        log.warning("cannot compile the model with lleaves (%s: %s); scoring with LightGBM's Booster",
                    type(exc).__name__, exc)
        return BoosterScorer(booster)
