"""Hot model reload: serve the artifact a models folder's LATEST names, without a restart.

When the server was started on a models folder (one with a LATEST file), it checks
LATEST every ``model_refresh_seconds`` and on SIGHUP. A new version is loaded off the
request path the way a starting server loads one (checksums, model.txt tried in a
child process, the trees compiled or their cache checked and smoke-scored against
LightGBM, features checked against the registry), then swapped in with one attribute
assignment: a request takes the model once at its start (``Ranker.rank``), so every
answer comes whole from the old model or the new. A version that fails any check is
refused and logged; the old one keeps serving, and the same bad version is not tried
again until LATEST changes.

``couponrank promote VERSION`` and ``couponrank rollback`` write LATEST (and the
folder's HISTORY); a running server picks the change up.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from couponrank.server.model import ModelMismatchError, RankerModel
from couponrank.server.periodic import Periodic

log = logging.getLogger(__name__)


class ModelReloader:
    def __init__(self, ranker, models: Path, service_features: Callable[[str], Sequence[str]] | None = None,
                 scorer: str = "auto", refresh_seconds: float = 10.0):
        """``service_features``: a feature service's inputs by name, from the registry
        (None: a new model must have the serving model's inputs exactly)."""
        self.ranker = ranker
        self.models = Path(models)
        self.service_features = service_features
        self.scorer = scorer
        self._lock = threading.Lock()  # one reload at a time (timer and SIGHUP)
        self._refused: str | None = None
        self._periodic = Periodic("model-reload", refresh_seconds, self.check)

    def latest(self) -> str | None:
        try:
            return (self.models / "LATEST").read_text().strip() or None
        except OSError:
            return None

    def check(self) -> bool:
        """Load and swap in LATEST's version if it is new; True when swapped."""
        with self._lock:
            version = self.latest()
            if version is None or version == self.ranker.model.version or version == self._refused:
                return False
            try:
                model = RankerModel.load(self.models / version, self.scorer)
                self._check(model)
            except Exception as exc:  # any failure: keep serving the old model
                self._refused = version
                log.error("model %s refused, still serving %s: %s", version, self.ranker.model.version, exc)
                return False
            old, self.ranker.model = self.ranker.model, model
            self._refused = None
            if self.ranker.metrics is not None:  # server/metrics.py: the info metric follows the swap
                self.ranker.metrics.model.info({"version": model.version, "scorer": model.scorer.name})
            log.info("model swapped: %s -> %s (%s scorer)", old.version, model.version, model.scorer.name)
            return True

    def _check(self, model: RankerModel) -> None:
        """The model's inputs are its feature service's, and this server reads them all
        (a model of another service is served when the server already reads its
        inputs: ranker_v1, ranker_v2 and ranker_v3 swap either way on a registry holding them all; otherwise restart)."""
        if self.service_features is None:
            model.check_features(self.ranker.model.features)
            return
        model.check_features(self.service_features(model.feature_service))
        provided = getattr(self.ranker.online, "provided", None)
        unread = [f for f in model.features if provided is not None and f not in provided]
        if unread:
            raise ModelMismatchError(
                f"model {model.version} (feature service '{model.feature_service}') needs features this server, "
                f"started on '{self.ranker.online.service_name}', does not read: {', '.join(unread)}; "
                "restart the server to serve it")

    def check_soon(self) -> None:
        """From a signal handler: reload on a thread of its own."""
        threading.Thread(target=self.check, name="model-reload-now", daemon=True).start()

    def start(self) -> None:
        self._periodic.start()

    def stop(self) -> None:
        self._periodic.stop()
