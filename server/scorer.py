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

The cache is outside the artifact's checksums, so it is checked before use: each
object has a ``.sha256`` file written with it, and a truncated or replaced object
(which LLVM would load with an abort) is discarded and compiled again; once loaded,
the compiled trees must score a sample of rows as LightGBM's Booster does (within
1e-9), or they are discarded too (an object compiled from another model). With
``auto`` any failure falls back to the Booster.
tests/test_online_reads.py holds the compiled scorer to Booster.predict within 1e-9.
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


class CompiledModelError(RuntimeError):
    """A cached compiled model is damaged or does not score as the model does."""


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def discard(path: Path) -> None:
    for p in (path, _sidecar(path)):
        try:
            p.unlink()
        except OSError:
            pass


def _intact(path: Path) -> bool:
    """Does the object still have the checksum written with it?"""
    try:
        return _sidecar(path).read_text().strip() == hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return False


def compile_artifact(artifact: Artifact) -> Path:
    """The compiled model's path: found intact in a cache, or compiled now and cached."""
    import lleaves

    name = _cache_name(artifact)
    for directory in cache_dirs(artifact):
        if (directory / name).is_file():
            if _intact(directory / name):
                return directory / name
            log.warning("compiled model %s is damaged or has no checksum; compiling it again", directory / name)
            discard(directory / name)
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
            digest = hashlib.sha256(Path(tmp).read_bytes()).hexdigest()
            side = _sidecar(directory / name)
            side.with_suffix(".tmp").write_text(digest + "\n")
            os.replace(side.with_suffix(".tmp"), side)  # the checksum first: an object alone is never trusted
            os.replace(tmp, directory / name)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        log.info("compiled %s with lleaves in %.1f s -> %s", artifact.version, time.perf_counter() - started,
                 directory / name)
        return directory / name
    raise OSError(f"no writable cache directory for the compiled model (tried {', '.join(map(str, cache_dirs(artifact)))})")


def smoke_rows(booster, n: int = 64, seed: int = 0) -> np.ndarray:
    """Rows that walk many branches: each numeric feature drawn around its split
    thresholds, each categorical one among its split categories and a few others,
    some values missing."""
    trees = booster.trees_to_dataframe()
    splits = trees.dropna(subset=["split_feature"])
    names = booster.feature_name()
    rng = np.random.default_rng(seed)
    X = rng.normal(0.0, 1.0, (n, len(names)))
    for j, name in enumerate(names):
        mine = splits[splits.split_feature == name]
        if not len(mine):
            continue
        if (mine.decision_type == "==").any():  # categorical: thresholds read "1||5"
            cats = sorted({int(c) for t in mine.threshold for c in str(t).split("||") if c.strip().isdigit()})
            X[:, j] = rng.choice(np.array(cats + [max(cats, default=0) + 1, 0], dtype=np.float64), n)
        else:
            t = mine.threshold.to_numpy(dtype=np.float64)
            t = t[np.isfinite(t)]
            if len(t):
                X[:, j] = rng.choice(t, n) + rng.choice([-1e-6, 1e-6, -1.0, 1.0], n)
    X[rng.random(X.shape) < 0.1] = np.nan
    return X


def load_compiled(artifact: Artifact, booster=None) -> CompiledScorer:
    """The compiled scorer; with ``booster``, checked against it on smoke_rows (a
    mismatch discards the cached object and raises CompiledModelError)."""
    import lleaves

    path = compile_artifact(artifact)
    model = lleaves.Model(model_file=str(artifact.model_file))
    model.compile(cache=str(path), raw_score=True)
    scorer = CompiledScorer(model, path)
    if booster is not None:
        X = smoke_rows(booster)
        gap = np.max(np.abs(scorer.predict(X) - BoosterScorer(booster).predict(X)))
        if not gap <= 1e-9:
            discard(path)
            raise CompiledModelError(f"{path}: the compiled trees score up to {gap:.3g} away from model.txt's; "
                                     "discarded")
    return scorer


def make_scorer(artifact: Artifact, booster, kind: str = "auto"):
    """``lleaves``: compiled (errors propagate); ``booster``: LightGBM; ``auto``:
    compiled, or the Booster with a warning when compiling fails."""
    if kind not in SCORERS:
        raise ValueError(f"scorer must be one of {', '.join(SCORERS)}, got {kind!r}")
    if kind == "booster":
        return BoosterScorer(booster)
    try:
        return load_compiled(artifact, booster)
    except Exception as exc:
        if kind == "lleaves":
            raise
        log.warning("cannot compile the model with lleaves (%s: %s); scoring with LightGBM's Booster",
                    type(exc).__name__, exc)
        return BoosterScorer(booster)
