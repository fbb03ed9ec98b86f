"""The evaluation report: a metrics table, a feature table, plots (PNG) and one HTML page beside the model."""

from __future__ import annotations

import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from couponrank.training.metrics import ndcg_at_k  # noqa: E402


def plot_ndcg_curves(test: pd.DataFrame, scores: dict[str, np.ndarray], path: Path, max_k: int = 6) -> None:
    ks = range(1, max_k + 1)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, s in scores.items():
        ax.plot(list(ks), [ndcg_at_k(test.label, s, test.request_id, k) for k in ks], marker="o",
                label=name, linewidth=2.5 if name == "lightgbm_ranker" else 1.2)
    ax.set_xlabel("k")
    ax.set_ylabel("NDCG@k (test period)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_importance(importance: pd.Series, path: Path, top: int = 25) -> None:
    imp = importance.sort_values().tail(top)
    fig, ax = plt.subplots(figsize=(7, 0.25 * len(imp) + 1))
    ax.barh(imp.index, imp.values)
    ax.set_xlabel("total gain")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def feature_sources(service) -> dict[str, str]:
    """feature -> the feature view (or on-demand view) it comes from, from a Feast
    FeatureService's projections; a name listed twice keeps its first view, as the
    service's feature order does."""
    sources: dict[str, str] = {}
    for projection in service.feature_view_projections:
        for f in projection.features:
            sources.setdefault(f.name, projection.name)
    return sources


def service_sources(repo: Path, service: str) -> dict[str, str]:
    """feature_sources of the registry's feature service ``service`` in the Feast repo ``repo``."""
    # imported here: the report's plots and tables need no feature store
    from couponrank.features import repo as feast_repo
    from couponrank.features.services import get_service

    return feature_sources(get_service(feast_repo.store(repo), service))


FEATURE_COLUMNS = ["feature", "source", "gain", "gain_share", "splits", "null_rate"]


def feature_table(booster, features: list[str], frame: pd.DataFrame,
                  sources: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per model feature, sorted by gain (descending; equal gains keep the model's
    feature order): its source view ("" when unknown), total gain, share of the total gain
    (NaN when the model never split), number of splits, and the share of NaN in ``frame``,
    the rows the model was fitted on. Features never split on are listed with 0."""
    names = list(features)
    if booster.feature_name() != names:
        # importances come by position: a different order would pin them on the wrong names
        raise ValueError(f"the booster's features {booster.feature_name()} are not {names}")
    gain = booster.feature_importance("gain").astype(np.float64)
    total = gain.sum()
    table = pd.DataFrame({
        "feature": names,
        "source": [(sources or {}).get(f, "") for f in names],
        "gain": gain,
        "gain_share": gain / total if total > 0 else np.full(len(names), np.nan),
        "splits": booster.feature_importance("split").astype(np.int64),
        "null_rate": frame[names].isna().mean().to_numpy(np.float64),
    })
    return table.sort_values("gain", ascending=False, kind="stable").reset_index(drop=True)


def plot_calibration(curve: pd.DataFrame, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 5))
    top = float(max(curve.predicted.max(), curve.observed.max())) * 1.05
    ax.plot([0, top], [0, top], "k--", linewidth=0.8, label="perfect")
    ax.plot(curve.predicted, curve.observed, marker="o", label="ranker (Platt-scaled)")
    ax.set_xlabel("predicted redemption probability")
    ax.set_ylabel("observed redemption rate")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _table_html(table: pd.DataFrame, cols: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(f'{v:.4f}' if isinstance(v, float) else str(v))}</td>"
                         for v in r) + "</tr>"
        for r in table[cols].itertuples(index=False)
    )
    return f"<table><tr>{head}</tr>{rows}</table>"


def write_html(path: Path, title: str, facts: dict[str, str], table: pd.DataFrame, images: list[str],
               tables: dict[str, pd.DataFrame] | None = None) -> None:
    """``tables``: more sections after the plots, heading -> table (every column, in order)."""
    cols = ["model", "population", *[c for c in table.columns if c.startswith(("ndcg", "precision", "recall", "f1"))],
            "map", "auc", "n_groups", "n_groups_with_positive"]
    facts_html = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in facts.items())
    imgs = "".join(f'<figure><img src="{html.escape(i)}" alt="{html.escape(i)}"></figure>' for i in images)
    extra = "".join(f"<h2>{html.escape(heading)}</h2>{_table_html(t, list(t.columns))}"
                    for heading, t in (tables or {}).items())
    path.write_text(f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 6px;text-align:right}}th{{background:#f4f4f4}}
figure{{display:inline-block;margin:1em}}</style></head><body>
<h1>{html.escape(title)}</h1><table>{facts_html}</table>
<h2>Test-period metrics</h2>{_table_html(table, cols)}
<h2>Plots</h2>{imgs}{extra}</body></html>""")
