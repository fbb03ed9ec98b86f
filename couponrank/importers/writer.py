"""Validate an adapter's tables against couponrank.schema and write the raw folder.

The folder has the layout the synthetic generator writes (couponrank/generate.py):
one zstd Parquet file per raw table, named by :attr:`schema.Table.file`, and a
``manifest.json`` (indented, sorted keys) with ``files``, ``row_counts``, ``start``,
``end`` and ``currency``; an import adds the extra files (:data:`base.EXTRA_TABLES`),
the adapter's name, source and constants, and the import report.

The write is atomic at folder level: everything is written into a temporary
sibling folder, which then takes the place of ``out_dir``; a failure leaves the
previous folder as it was. An existing ``out_dir`` is only replaced if it is empty
or holds a ``manifest.json`` (a raw folder), never some other folder.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from couponrank import schema
from couponrank.importers.base import EXTRA_DESCRIPTIONS, EXTRA_TABLES, Imported
from couponrank.schema import Table

COMPRESSION = "zstd"  # as couponrank/generate.py
ENUMS = {
    ("coupons", "coupon_type"): schema.COUPON_TYPES,
    ("coupons", "scope"): schema.COUPON_SCOPES,
    ("behaviour_events", "event_type"): schema.BEHAVIOUR_EVENT_TYPES,
    ("coupon_events", "event_type"): schema.COUPON_EVENT_TYPES,
    ("coupon_events", "placement"): schema.PLACEMENTS,
}


class RawWriteError(ValueError):
    """The tables do not fit the schema, or the folder cannot be written; the message
    names the table and column (or the folder)."""


def validate(table: Table, data: pa.Table) -> None:
    """Columns and types exactly the schema's, keys present and unique, enum values
    known, validity windows forward."""
    name = table.name
    want, got = table.schema, data.schema
    missing = [f.name for f in want if f.name not in got.names]
    if missing:
        raise RawWriteError(f"{name}: missing column(s) {', '.join(missing)}")
    extra = [n for n in got.names if n not in want.names]
    if extra:
        raise RawWriteError(f"{name}: column(s) not in the schema: {', '.join(extra)}")
    for f in want:
        if got.field(f.name).type != f.type:
            raise RawWriteError(f"{name}: column {f.name} has type {got.field(f.name).type}, expected {f.type}")
    for k in table.key:
        if data.column(k).null_count:
            raise RawWriteError(f"{name}: column {k}: {data.column(k).null_count} null key(s)")
    if data.num_rows:
        keys = data.group_by(list(table.key)).aggregate([([], "count_all")])
        if keys.num_rows != data.num_rows:
            raise RawWriteError(f"{name}: column(s) {'/'.join(table.key)}: "
                                f"{data.num_rows - keys.num_rows} duplicate key(s)")
    for (tname, col), allowed in ENUMS.items():
        if tname == name:
            values = pc.unique(data.column(col).drop_null()).to_pylist()
            unknown = sorted(set(values) - set(allowed))
            if unknown:
                raise RawWriteError(f"{name}: column {col}: unknown value(s) {unknown[:5]}")
    if name == "coupons" and data.num_rows:
        bad = pc.sum(pc.cast(pc.less_equal(data.column("valid_to"), data.column("valid_from")), pa.int64())).as_py()
        if bad:
            raise RawWriteError(f"coupons: column valid_to: {bad} coupon(s) not valid after valid_from")


def _event_range(tables: dict[str, pa.Table]) -> tuple[str | None, str | None]:
    lo, hi = [], []
    for t in schema.RAW_TABLES:
        if t.timestamp and tables[t.name].num_rows:
            mm = pc.min_max(tables[t.name].column(t.timestamp))
            lo.append(mm["min"].as_py())
            hi.append(mm["max"].as_py())
    return (min(lo).isoformat() if lo else None, max(hi).isoformat() if hi else None)


def write_raw(out_dir: Path, imported: Imported) -> dict:
    """Validate every table and write the raw folder atomically; return the manifest."""
    out_dir = Path(out_dir)
    tables = imported.tables
    for t in schema.RAW_TABLES:
        if t.name not in tables:
            raise RawWriteError(f"{t.name}: table missing from the import")
        validate(t, tables[t.name])
    extras = {t.name: t for t in EXTRA_TABLES}
    for name, data in imported.extra.items():
        if name not in extras:
            raise RawWriteError(f"{name}: not a known extra table ({', '.join(extras)})")
        validate(extras[name], data)
    imported.report.check()

    if out_dir.exists() and not out_dir.is_dir():
        raise RawWriteError(f"{out_dir}: exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / "manifest.json").is_file():
        raise RawWriteError(f"{out_dir}: a non-empty folder without manifest.json (not a raw data folder); "
                            "refusing to replace it")

    start, end = _event_range(tables)
    files = {t.name: t.file for t in schema.RAW_TABLES}
    manifest = {
        **imported.manifest,
        "start": start,
        "end": end,
        "shipping_fee": schema.SHIPPING_FEE,
        "files": files,
        "extra_files": {name: {"file": extras[name].file, "about": EXTRA_DESCRIPTIONS[name]}
                        for name in sorted(imported.extra)},
        "row_counts": {**{n: tables[n].num_rows for n in files},
                       **{n: d.num_rows for n, d in imported.extra.items()}},
        "import_report": imported.report.to_dict(),
    }

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        for t in schema.RAW_TABLES:
            pq.write_table(tables[t.name], tmp / t.file, compression=COMPRESSION)
        for name, data in imported.extra.items():
            pq.write_table(data, tmp / extras[name].file, compression=COMPRESSION)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        if out_dir.exists():
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not out_dir.exists():
            os.replace(old, out_dir)
        raise RawWriteError(f"{out_dir}: cannot write the raw folder ({exc})") from exc
    shutil.rmtree(old, ignore_errors=True)
    return manifest
