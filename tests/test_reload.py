"""Hot model reload: promote / rollback move LATEST, the running server swaps the model
in under load without a failed request, and refuses a damaged version while the old
one keeps serving."""

from __future__ import annotations

import json
import shutil
import threading

import pytest

from couponrank.cli import main
from couponrank.client import CouponRankClient
from couponrank.training.artifact import ArtifactError, load_artifact, rollback, sha256

pytestmark = pytest.mark.slow
pytest_plugins = ["server_fixtures"]  # built


def _copy_as(src, models, version, damage=None):
    dest = models / version
    shutil.copytree(src, dest)
    meta = json.loads((dest / "metadata.json").read_text())
    meta["version"] = version
    if damage:
        text = (dest / "model.txt").read_text()
        (dest / "model.txt").write_text(text[: len(text) // 2])
        meta["checksums"]["model.txt"] = sha256(dest / "model.txt")
    (dest / "metadata.json").write_text(json.dumps(meta))


@pytest.fixture
def models(built, tmp_path):
    art = load_artifact(built.models)
    models = tmp_path / "models"
    models.mkdir()
    shutil.copytree(art.path, models / art.version)
    (models / "LATEST").write_text(art.version + "\n")
    (models / "HISTORY").write_text(art.version + "\n")
    _copy_as(art.path, models, "ranker-b")
    _copy_as(art.path, models, "ranker-damaged", damage=True)
    return models, art.version


def test_swaps_under_load_fail_no_request_and_a_damaged_version_is_refused(built, models, capsys):
    from couponrank.server.main import serve
    from couponrank.server.service import ServerConfig
    from pinned import UNIX_CLOCK

    folder, first = models
    running = serve(built.repo, folder, port=0, config=ServerConfig(model_refresh_seconds=0, metrics_port=0),
                    clock=UNIX_CLOCK)
    assert running.reloader is not None and running.ranker.model.version == first
    stop, failures, seen = threading.Event(), [], set()

    def load():
        with CouponRankClient(f"127.0.0.1:{running.port}", timeout=10.0, max_attempts=1) as c:
            while not stop.is_set():
                try:
                    seen.add(c.rank_coupons("u000001", placement="home", explain=True).model_version)
                except Exception as exc:  # any failed request fails the test
                    failures.append(exc)

    callers = [threading.Thread(target=load) for _ in range(3)]
    for t in callers:
        t.start()
    try:
        for version in ("ranker-b", first, "ranker-b", first):
            assert main(["promote", version, "--models", str(folder)]) == 0
            assert running.reloader.check()
            assert running.ranker.model.version == version
            info = {"version": version, "scorer": running.ranker.model.scorer.name}
            assert running.servicer.metrics.registry.get_sample_value("couponrank_model_info", info) == 1
        with CouponRankClient(f"127.0.0.1:{running.port}", timeout=10.0) as c:
            assert c.model_info().model_version == first

        # a damaged version: refused, the old one keeps serving, not retried until LATEST changes
        assert main(["promote", "ranker-damaged", "--models", str(folder)]) == 0  # checksums hold
        assert not running.reloader.check() and running.ranker.model.version == first
        assert not running.reloader.check()
        # rollback: LATEST back to the version served before the damaged one
        assert main(["rollback", "--models", str(folder)]) == 0
        assert (folder / "LATEST").read_text().strip() == first
        assert not running.reloader.check()  # already serving it
    finally:
        stop.set()
        for t in callers:
            t.join(30)
        running.stop(0).wait(5)
    assert not failures, failures[:3]
    assert seen == {first, "ranker-b"}
    assert "rolled back" in capsys.readouterr().out


def test_promote_and_rollback_refuse_what_cannot_be_served(models, capsys):
    folder, first = models
    assert main(["promote", "ranker-nope", "--models", str(folder)]) == 2
    assert "no such model version" in capsys.readouterr().err
    (folder / "ranker-b" / "model.txt").write_text("altered")
    assert main(["promote", "ranker-b", "--models", str(folder)]) == 2  # checksum mismatch
    assert "checksum" in capsys.readouterr().err
    assert (folder / "LATEST").read_text().strip() == first
    with pytest.raises(ArtifactError, match="no version before"):
        rollback(folder)
