"""The versioned model artifact the server loads: exactly these files, checksummed.

    <models>/<version>/model.txt        LightGBM model (text format)
    <models>/<version>/features.json    feature names in model order, categorical, monotone
    <models>/<version>/metadata.json    version, training range, split, config, metrics,
                                        calibration, sha256 of model.txt and features.json
    <models>/<version>/report.html, *.png, metrics.csv
    <models>/LATEST                     the newest version's name
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from couponrank.clock import utc_now

CHECKSUMMED = ("model.txt", "features.json")


class ArtifactError(ValueError):
    """The artifact is missing, incomplete or altered; the message names the file."""


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def new_version(model_text: str) -> str:
    stamp = utc_now().strftime("%Y%m%dT%H%M%SZ")
    return f"ranker-{stamp}-{hashlib.sha256(model_text.encode()).hexdigest()[:8]}"


def write_artifact(models_dir: Path, version: str, model_text: str, features: dict, metadata: dict,
                   extra_files: dict[str, Path] | None = None) -> Path:
    """Write everything into a temporary folder, then rename: never a half artifact."""
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    tmp = models_dir / f".{version}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    (tmp / "model.txt").write_text(model_text)
    (tmp / "features.json").write_text(json.dumps(features, indent=2))
    for name, src in (extra_files or {}).items():
        shutil.copy2(src, tmp / name)
    metadata = {**metadata, "version": version,
                "checksums": {name: sha256(tmp / name) for name in CHECKSUMMED}}
    (tmp / "metadata.json").write_text(json.dumps(metadata, indent=2, default=str))
    final = models_dir / version
    tmp.rename(final)
    set_latest(models_dir, version)
    return final


def set_latest(models_dir: Path, version: str) -> None:
    """Point LATEST at ``version`` (atomically) and append it to HISTORY, the order
    versions were served in (what `couponrank rollback` walks back)."""
    models_dir = Path(models_dir)
    (models_dir / "LATEST.tmp").write_text(version + "\n")
    (models_dir / "LATEST.tmp").replace(models_dir / "LATEST")
    with open(models_dir / "HISTORY", "a") as history:
        history.write(version + "\n")


def promote(models_dir: Path, version: str) -> Artifact:
    """Serve ``version`` next: verified first (checksums), then LATEST points at it."""
    models_dir = Path(models_dir)
    if not (models_dir / version / "metadata.json").is_file():
        raise ArtifactError(f"{models_dir / version}: no such model version")
    art = load_artifact(models_dir / version)
    set_latest(models_dir, version)
    return art


def rollback(models_dir: Path) -> str:
    """LATEST back to the version served before the current one (by HISTORY); returns it."""
    models_dir = Path(models_dir)
    try:
        current = (models_dir / "LATEST").read_text().strip()
        history = [v for v in (models_dir / "HISTORY").read_text().split() if v]
    except OSError as exc:
        raise ArtifactError(f"{models_dir}: no LATEST or HISTORY to roll back ({exc.strerror})") from None
    while history and history[-1] == current:
        history.pop()
    earlier = [v for v in history if v != current and (models_dir / v / "metadata.json").is_file()]
    if not earlier:
        raise ArtifactError(f"{models_dir}: no version before {current} to roll back to")
    previous = earlier[-1]
    load_artifact(models_dir / previous)
    set_latest(models_dir, previous)
    return previous


def resolve(path: Path) -> Path:
    """A version folder, or a models folder whose LATEST names one."""
    path = Path(path)
    if (path / "LATEST").is_file():
        path = path / (path / "LATEST").read_text().strip()
    if not (path / "metadata.json").is_file():
        raise ArtifactError(f"{path}: not a model artifact (no metadata.json)")
    return path


@dataclass
class Artifact:
    path: Path
    version: str
    features: list[str]
    categorical: list[str]
    metadata: dict

    @property
    def model_file(self) -> Path:
        return self.path / "model.txt"


def _json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from None
    if not isinstance(value, dict):
        raise ArtifactError(f"{path}: not a JSON object")
    return value


def load_artifact(path: Path) -> Artifact:
    """Load and verify checksums; raises ArtifactError naming the bad file (never
    another error, whatever the damage)."""
    path = resolve(path)
    metadata = _json(path / "metadata.json")
    checksums = metadata.get("checksums")
    if not isinstance(checksums, dict) or not isinstance(metadata.get("version"), str):
        raise ArtifactError(f"{path / 'metadata.json'}: no version or checksums")
    for name in CHECKSUMMED:
        f = path / name
        if not f.is_file():
            raise ArtifactError(f"{f}: missing from the artifact")
        if sha256(f) != checksums.get(name):
            raise ArtifactError(f"{f}: checksum mismatch (the file was altered after training)")
    features = _json(path / "features.json")
    names, categorical = features.get("features"), features.get("categorical", [])
    if (not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names)
            or not isinstance(categorical, list)):
        raise ArtifactError(f"{path / 'features.json'}: no list of feature names")
    return Artifact(path, metadata["version"], names, categorical, metadata)
