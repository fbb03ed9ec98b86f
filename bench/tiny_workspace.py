"""The tiny demo workspace the small server benches share, built once into a folder
(data ends 2026-07-01; requests must carry a request time, e.g. REQUEST_TIME)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

END_DATE = date(2026, 7, 1)
NOW = datetime(2026, 7, 1, 10, tzinfo=UTC)
REQUEST_TIME = "2026-07-01T10:00:00Z"


def workspace(work: Path) -> tuple[Path, Path]:
    """(feature repo, models) of the tiny demo in ``work``, built on first use."""
    from couponrank.clock import fixed
    from couponrank.demo import run_demo

    repo, models = work / "features", work / "models"
    if not (work / "built").exists():
        run_demo(work / "raw", repo, models, size="tiny", progress=False, end_date=END_DATE, clock=fixed(NOW))
        (work / "built").touch()
    return repo, models
