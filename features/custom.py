"""A feature engineer's own offline sources: builders that `couponrank build-features`
runs, and the checks every offline source must pass.

A workspace (a Feast repository folder: ``features/`` or a copy) may hold a file
``builders.py`` beside ``definitions.py``. Each function in it decorated with
:func:`offline_source` builds one source from the cleaned raw tables::

    from couponrank.features.custom import offline_source

    @offline_source("user_distinct_items")
    def build(data: CleanData) -> pd.DataFrame:
        ...

``build_features`` (features/build.py) imports that file by path after the built-in
views, calls each builder, checks and normalizes its frame (:func:`normalize`) and
writes ``<repo>/data/<name>.parquet`` (write then rename, like the built-in sources).
A builder that raises or returns a frame that cannot be a source stops the build with
:class:`BuilderError` naming it; what ``data/`` already holds stays as it was.

:func:`check_parquet_sources` is what ``couponrank apply`` runs first: DuckDB (the
offline store) cannot read nanosecond zone-aware timestamps (materialize fails with
``ConversionException ... TIMESTAMPTZ_NS -> TIMESTAMP``), and zone-less ones are
ambiguous, so a Parquet source holding either is refused naming file and column.
docs/data.md, "Offline sources", states the whole contract.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa

from couponrank.features.services import IMPLIED_FROM_COUPON, REQUEST_KEYS

BUILDERS_FILE = "builders.py"
# The module name builders.py is imported under (and forgotten after), as Feast imports
# definitions.py under "definitions".
MODULE = "builders"
TIMESTAMPS = ("event_timestamp", "created_timestamp")
# The project's entities' join keys (definitions.py): always stored as strings.
JOIN_KEYS = (*REQUEST_KEYS, *IMPLIED_FROM_COUPON)
TIMESTAMP_FIX = "write timestamps as microseconds UTC"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class BuilderError(ValueError):
    """A builder in builders.py failed or returned a frame that cannot be an offline
    source; the message names the builder (and the column)."""


class OfflineSourceError(ValueError):
    """A Parquet offline source the offline store cannot read correctly; the message
    names the file, the column and the fix."""


@dataclass(frozen=True)
class Builder:
    name: str  # the source: <repo>/data/<name>.parquet
    func: Callable
    keys: tuple[str, ...]  # entity join keys besides the project's own (JOIN_KEYS)

    @property
    def where(self) -> str:
        return f"builder '{self.name}' ({getattr(self.func, '__qualname__', self.func)} in {BUILDERS_FILE})"


_lock = threading.Lock()
_registered: list[Builder] = []


def offline_source(name: str, keys: Sequence[str] = ()) -> Callable[[Callable], Callable]:
    """Register the decorated ``func(data: CleanData) -> pandas.DataFrame`` as the
    builder of the offline source ``<repo>/data/<name>.parquet``.

    ``keys``: entity join keys of entities of your own; the project's (user_id,
    coupon_id, category) are recognised without it. Key columns are stored as strings."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"offline_source({name!r}): the name must be a Python identifier (it names "
                         f"data/<name>.parquet)")
    keys = (keys,) if isinstance(keys, str) else tuple(keys)

    def register(func: Callable) -> Callable:
        _registered.append(Builder(name, func, keys))
        func.offline_source = name
        return func

    return register


def load_builders(repo: Path) -> list[Builder]:
    """The builders of ``<repo>/builders.py`` in the order they are defined ([] without
    the file). The file is imported by its path under the name ``builders``, forgetting
    any module of that name imported before (another workspace's), with the workspace on
    sys.path so that it may import modules beside it."""
    path = Path(repo) / BUILDERS_FILE
    if not path.is_file():
        return []
    with _lock:
        saved_path = list(sys.path)
        sys.modules.pop(MODULE, None)
        _registered.clear()
        try:
            sys.path.insert(0, str(path.parent.resolve()))
            spec = importlib.util.spec_from_file_location(MODULE, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[MODULE] = module
            spec.loader.exec_module(module)
        except Exception as exc:
            raise BuilderError(f"{path}: cannot import it ({_describe(exc)}); nothing was built") from exc
        finally:
            sys.path[:] = saved_path
            sys.modules.pop(MODULE, None)
        builders = list(_registered)
        _registered.clear()
    seen = {}
    for b in builders:
        if b.name in seen:
            raise BuilderError(f"{path}: two builders write the source '{b.name}' ({seen[b.name]} and "
                               f"{b.func.__qualname__}); nothing was built")
        seen[b.name] = b.func.__qualname__
    return builders


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return f"SyntaxError at line {exc.lineno}: {exc.msg}"
    return f"{type(exc).__name__}: {exc}"


def run_builder(builder: Builder, data) -> pd.DataFrame:
    """Call the builder and return its frame checked and normalized, or raise
    BuilderError naming it."""
    try:
        df = builder.func(data)
    except Exception as exc:
        raise BuilderError(f"{builder.where} failed: {_describe(exc)}") from exc
    try:
        return normalize(df, builder)
    except BuilderError:
        raise
    except Exception as exc:  # a frame too odd for the checks themselves
        raise BuilderError(f"{builder.where} returned a frame that cannot be checked: {_describe(exc)}") from exc


def normalize(df, builder: Builder) -> pd.DataFrame:
    """The builder's frame as an offline source: ``event_timestamp`` required; every
    timestamp column zone-aware (naive ones refused) and converted to microseconds UTC;
    ``created_timestamp`` = ``event_timestamp`` when absent (as the built-in views set
    it); entity key columns as strings, without nulls; no duplicate rows per key and
    timestamps (Feast would pick one of them at random)."""
    where = builder.where
    if not isinstance(df, pd.DataFrame):
        raise BuilderError(f"{where} returned {type(df).__name__}, not a pandas DataFrame")
    if df.columns.duplicated().any():
        dup = sorted(set(df.columns[df.columns.duplicated()].astype(str)))
        raise BuilderError(f"{where}: duplicate column names {dup}")
    # named index levels (a groupby's keys) are columns; a plain row number is not
    named = any(n is not None for n in df.index.names)
    df = df.reset_index(drop=not named).copy()
    if "event_timestamp" not in df.columns:
        raise BuilderError(f"{where}: no event_timestamp column (the snapshot time of each row, "
                           f"timestamp[us, UTC]); it has {list(df.columns)}")
    for col in df.columns:
        dtype = df[col].dtype
        if col in TIMESTAMPS and not pd.api.types.is_datetime64_any_dtype(dtype):
            raise BuilderError(f"{where}: column {col} is {dtype}, not a timestamp (datetime64 with a zone, UTC)")
        if not pd.api.types.is_datetime64_any_dtype(dtype):
            continue
        if not isinstance(dtype, pd.DatetimeTZDtype):
            raise BuilderError(f"{where}: column {col} holds naive timestamps: give them a zone, UTC "
                               f"(df['{col}'].dt.tz_localize('UTC') if they are UTC)")
        # ceil: a row is never visible before the time it was stamped with (point in time)
        df[col] = df[col].dt.tz_convert("UTC").dt.ceil("us").astype("datetime64[us, UTC]")
    if df["event_timestamp"].isna().any():
        raise BuilderError(f"{where}: {int(df['event_timestamp'].isna().sum())} rows without event_timestamp")
    if "created_timestamp" not in df.columns:
        df["created_timestamp"] = df["event_timestamp"]  # as the built-in views stamp theirs
    keys = [c for c in df.columns if c in JOIN_KEYS or c in builder.keys]
    missing = [k for k in builder.keys if k not in df.columns]
    if missing:
        raise BuilderError(f"{where}: no column {', '.join(missing)} (declared in keys=)")
    if not keys:
        raise BuilderError(f"{where}: no entity key column ({', '.join(JOIN_KEYS)}, or your own entities' "
                           f"join keys named in @offline_source(..., keys=[...])); it has {list(df.columns)}")
    for key in keys:
        col = df[key]
        if col.isna().any():
            raise BuilderError(f"{where}: key column {key} has {int(col.isna().sum())} null values")
        if not (pd.api.types.is_string_dtype(col.dtype) or pd.api.types.is_integer_dtype(col.dtype)
                or isinstance(col.dtype, pd.CategoricalDtype)):
            raise BuilderError(f"{where}: key column {key} is {col.dtype}: entity keys are strings (ids as the "
                               f"raw data writes them)")
        df[key] = col.astype(str).astype(object)
    dup = df.duplicated(subset=[*keys, *TIMESTAMPS])
    if dup.any():
        raise BuilderError(f"{where}: {int(dup.sum())} rows repeat another's keys ({', '.join(keys)}) and "
                           f"timestamps: one row per key and snapshot")
    return df


def _timestamp_problem(field: pa.Field) -> str | None:
    """What is wrong with a timestamp column for the offline store, and the fix; None if nothing."""
    t = field.type
    if not pa.types.is_timestamp(t):
        return None
    col = field.name
    if t.tz is None:
        return (f"naive timestamps ({t}, no zone): give them one, UTC: "
                f"df['{col}'] = df['{col}'].dt.tz_localize('UTC').astype('datetime64[us, UTC]')")
    if t.unit == "ns":
        return (f"nanosecond timestamps ({t}), which DuckDB, the offline store, cannot read (materialize "
                f"fails: ConversionException ... TIMESTAMPTZ_NS -> TIMESTAMP): {TIMESTAMP_FIX}: "
                f"df['{col}'] = df['{col}'].astype('datetime64[us, UTC]')")
    return None


def check_parquet_sources(paths: Iterable[Path]) -> None:
    """Refuse (OfflineSourceError) any of these Parquet files or folders with a
    timestamp column in nanoseconds or without a zone; reads schemas only."""
    import pyarrow.dataset as ds

    problems = []
    for path in paths:
        try:
            schema = ds.dataset(str(path), format="parquet").schema
        except Exception as exc:
            problems.append(f"{path}: not a readable Parquet source ({type(exc).__name__}: {exc})")
            continue
        for field in schema:
            problem = _timestamp_problem(field)
            if problem:
                problems.append(f"{path}: column {field.name} has {problem}")
    if problems:
        raise OfflineSourceError("; ".join(problems) + " (couponrank build-features writes builders.py's sources "
                                 "so); nothing was applied")


def parquet_sources(data_sources: Iterable) -> list[Path]:
    """The local Parquet files (or folders) of the FileSources among ``data_sources``
    (Feast's parsed repository); sources elsewhere (URLs) and not yet written are left out."""
    from feast import FileSource
    from feast.data_format import ParquetFormat

    out = []
    for source in data_sources:
        if not isinstance(source, FileSource) or "://" in str(source.path):
            continue
        if source.file_format is not None and not isinstance(source.file_format, ParquetFormat):
            continue  # Delta and the like: not ours to check
        path = Path(source.path)
        if path.exists():
            out.append(path)
    return sorted(set(out))
