"""The ranking model: a verified artifact, a LightGBM Booster, explanations.

Loaded once at start (:meth:`RankerModel.load`): the artifact's checksums are
verified (training.artifact.load_artifact), model.txt is parsed once, and the
artifact's feature list is checked against the registry's ``ranker_v1`` feature
service (:meth:`RankerModel.check_features`); a mismatch refuses to start with a
message naming the missing and extra features. Scores come from the compiled trees
(server/scorer.py); explanations from the Booster's ``pred_contrib``.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import numpy as np

from couponrank.features.services import DEFAULT_FEATURE_SERVICE
from couponrank.server.scorer import BoosterScorer, make_scorer
from couponrank.training.artifact import Artifact, ArtifactError, load_artifact


_CHECK_MODEL = """
import sys
import lightgbm as lgb
import numpy as np
booster = lgb.Booster(model_file=sys.argv[1])
n = int(sys.argv[2])
if booster.num_feature() != n:
    sys.exit(f"it has {booster.num_feature()} features, features.json lists {n}")
X = np.vstack([np.zeros(n), np.full(n, np.nan), np.arange(n, dtype=float)])
booster.predict(X, raw_score=True, num_threads=1)
booster.predict(X, pred_contrib=True, num_threads=1)
"""


def check_model_file(art: Artifact, timeout: float = 300.0) -> None:
    """Load and score model.txt in a child process first: LightGBM can crash the
    process (SIGSEGV) on a damaged file whose checksum was updated with it."""
    try:
        run = subprocess.run([sys.executable, "-c", _CHECK_MODEL, str(art.model_file), str(len(art.features))],
                             capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ArtifactError(f"{art.model_file}: LightGBM did not load it within {timeout:.0f} s") from None
    if run.returncode != 0:
        lines = run.stderr.strip().splitlines()
        why = (f"the loader was killed by signal {-run.returncode}" if run.returncode < 0
               else (lines[-1] if lines else f"exit {run.returncode}")[:300])
        raise ArtifactError(f"{art.model_file}: LightGBM cannot use it ({why})")


class ModelMismatchError(RuntimeError):
    """The model cannot be served with this feature registry; the message says why."""


@dataclass(frozen=True)
class Explanation:
    feature: str
    value: float
    contribution: float


class RankerModel:
    def __init__(self, artifact: Artifact, booster: lgb.Booster, scorer=None):
        self.artifact = artifact
        self.booster = booster
        self.scorer = scorer or BoosterScorer(booster)
        self.version = artifact.version
        self.features = list(artifact.features)
        # the feature service it was trained on (training config's feature_service); older
        # artifacts name none and were trained on ranker_v1
        self.feature_service = str(artifact.metadata.get("feature_service") or DEFAULT_FEATURE_SERVICE)
        booster_features = booster.feature_name()
        if booster_features != self.features:
            raise ModelMismatchError(
                f"{artifact.path}: features.json does not list model.txt's features in order "
                f"(model.txt: {len(booster_features)}, features.json: {len(self.features)})")

    @classmethod
    def load(cls, path: Path, scorer: str = "auto") -> "RankerModel":
        """``scorer``: auto (compiled, else the Booster), lleaves or booster (server/scorer.py).
        A damaged artifact raises ArtifactError naming the file, and model.txt is first
        tried in a child process, so that a file that would crash LightGBM cannot take
        this process down."""
        art = load_artifact(Path(path))
        check_model_file(art)
        try:
            booster = lgb.Booster(model_file=str(art.model_file))
        except Exception as exc:  # LightGBMError, ...: the child process passed, but be sure
            raise ArtifactError(f"{art.model_file}: LightGBM cannot load it ({exc})") from None
        return cls(art, booster, make_scorer(art, booster, scorer))

    def check_features(self, registry_features: Sequence[str]) -> None:
        """Refuse a model whose inputs are not exactly its feature service's features
        (``registry_features``: that service's, as the registry has it)."""
        service = self.feature_service
        model, registry = set(self.features), set(registry_features)
        missing, extra = sorted(model - registry), sorted(registry - model)
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"model features missing from the registry's '{service}' feature service: "
                             f"{', '.join(missing)}")
            if extra:
                parts.append(f"'{service}' features the model does not use: {', '.join(extra)}")
            raise ModelMismatchError(
                f"model {self.version} ({self.artifact.path}) does not match the feature registry: "
                + "; ".join(parts) + ". Retrain the model or serve it with the registry it was trained on.")

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Raw scores (one thread: requests are small, the server runs many at once)."""
        return self.scorer.predict(X)

    def contributions(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature contributions (n x features) and the bias (n); their row sum
        is the raw score."""
        c = np.asarray(self.booster.predict(X, pred_contrib=True, num_threads=1), dtype=np.float64)
        return c[:, :-1], c[:, -1]

    def explain(self, X: np.ndarray, max_reasons: int = 10,
                shown: np.ndarray | None = None) -> list[list[Explanation]]:
        """Per row, the features with a non-zero contribution, largest |contribution|
        first (ties by model order), at most ``max_reasons`` (0: all); ``shown``: a
        mask over the model's features, the only ones named (None: all)."""
        contrib, _ = self.contributions(X)
        out = []
        for i in range(len(X)):
            nz = np.flatnonzero((contrib[i] != 0) if shown is None else (contrib[i] != 0) & shown)
            nz = nz[np.argsort(-np.abs(contrib[i, nz]), kind="stable")]
            if max_reasons > 0:
                nz = nz[:max_reasons]
            out.append([Explanation(self.features[j], float(X[i, j]), float(contrib[i, j])) for j in nz])
        return out
