"""Damaged model artifacts: refused with a message naming the file (exit 2 from the
CLI), never a crash; a damaged or foreign compiled object is discarded, and `auto`
falls back to LightGBM's Booster."""

from __future__ import annotations

import json
import shutil

import lightgbm as lgb
import numpy as np
import pytest

from couponrank.cli import main
from couponrank.server import scorer as scorer_mod
from couponrank.server.model import RankerModel
from couponrank.training.artifact import ArtifactError, load_artifact, sha256

pytestmark = pytest.mark.slow
pytest_plugins = ["server_fixtures"]  # built


@pytest.fixture
def copy(built, tmp_path):
    """A copy of the built artifact (with its compiled object) to damage."""
    art = load_artifact(built.models)
    dest = tmp_path / "models" / art.version
    shutil.copytree(art.path, dest)
    (tmp_path / "models" / "LATEST").write_text(art.version + "\n")
    return dest


def _rechecksum(folder, name):
    meta = json.loads((folder / "metadata.json").read_text())
    meta["checksums"][name] = sha256(folder / name)
    (folder / "metadata.json").write_text(json.dumps(meta))


def _truncate_model(folder):
    text = (folder / "model.txt").read_text()
    (folder / "model.txt").write_text(text[: len(text) // 2])
    _rechecksum(folder, "model.txt")


def _garbage_features(folder):
    (folder / "features.json").write_text('{"features": 7}')
    _rechecksum(folder, "features.json")


DAMAGE = {
    "model.txt truncated, checksum updated": ("model.txt", _truncate_model),
    "model.txt garbage, checksum updated": ("model.txt", lambda f: ((f / "model.txt").write_bytes(b"\x00\xff" * 999),
                                                                    _rechecksum(f, "model.txt"))),
    "model.txt altered": ("model.txt", lambda f: (f / "model.txt").write_text((f / "model.txt").read_text() + "\n")),
    "model.txt missing": ("model.txt", lambda f: (f / "model.txt").unlink()),
    "metadata.json not JSON": ("metadata.json", lambda f: (f / "metadata.json").write_text("{")),
    "metadata.json without checksums": ("metadata.json", lambda f: (f / "metadata.json").write_text('{"version": "x"}')),
    "metadata.json a list": ("metadata.json", lambda f: (f / "metadata.json").write_text("[]")),
    "features.json without names": ("features.json", _garbage_features),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_artifact_is_refused_naming_the_file(built, copy, case, capsys):
    name, damage = DAMAGE[case]
    damage(copy)
    with pytest.raises(ArtifactError) as exc:
        RankerModel.load(copy, "booster")
    assert name in str(exc.value)
    # the server command: a message and exit 2, no traceback, nothing served
    assert main(["serve", "--quiet", "--repo", str(built.repo), "--model", str(copy), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "server not started" in err and name in err and "Traceback" not in err


def test_a_damaged_compiled_object_is_compiled_again(copy):
    art = load_artifact(copy)
    booster = lgb.Booster(model_file=str(art.model_file))
    path = scorer_mod.compile_artifact(art)
    assert path.parent == copy / "compiled" and scorer_mod._intact(path)
    path.write_bytes(path.read_bytes()[:1000])  # truncated: LLVM would abort the process loading it
    compiled = scorer_mod.make_scorer(art, booster, "auto")
    assert compiled.name == "lleaves" and scorer_mod._intact(compiled.path)
    X = scorer_mod.smoke_rows(booster, seed=1)
    np.testing.assert_allclose(compiled.predict(X), booster.predict(X, raw_score=True), rtol=0, atol=1e-9)


def test_a_compiled_object_of_another_model_is_discarded(copy, tmp_path, caplog):
    """An object compiled from another model, under this model's cache name and with a
    checksum that matches it: the smoke rows tell, and `auto` serves with the Booster."""
    import lleaves

    art = load_artifact(copy)
    booster = lgb.Booster(model_file=str(art.model_file))
    genuine = scorer_mod.compile_artifact(art)
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, len(art.features)))
    other = lgb.train({"objective": "regression", "num_leaves": 4, "verbose": -1, "min_data_in_leaf": 5},
                      lgb.Dataset(X, X[:, 0] * 3 + rng.normal(size=300), feature_name=art.features), 5)
    other.save_model(str(tmp_path / "other.txt"))
    lleaves.Model(model_file=str(tmp_path / "other.txt")).compile(cache=str(tmp_path / "other.o"), raw_score=True)
    shutil.copy(tmp_path / "other.o", genuine)
    scorer_mod._sidecar(genuine).write_text(sha256(genuine) + "\n")
    assert scorer_mod._intact(genuine)  # its checksum alone cannot tell

    with pytest.raises(scorer_mod.CompiledModelError, match="discarded"):
        scorer_mod.make_scorer(art, booster, "lleaves")
    assert not genuine.exists()
    shutil.copy(tmp_path / "other.o", genuine)
    scorer_mod._sidecar(genuine).write_text(sha256(genuine) + "\n")
    with caplog.at_level("WARNING"):
        fallback = scorer_mod.make_scorer(art, booster, "auto")
    assert fallback.name == "booster" and not genuine.exists()
    assert "scoring with LightGBM's Booster" in caplog.text
