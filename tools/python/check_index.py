#!/usr/bin/env python3
"""Open a store's index tables with pyarrow, pandas, polars and DuckDB, unchanged, and
report their schemas and row counts, so ctstream's tests can compare them with
format/INDEX.md.

Usage: python3 tools/python/check_index.py STORE
Prints JSON: {table: {"columns": [[name, arrow type, nullable], ...], "rows": n,
"duckdb_rows": n, "pandas_rows": n, "polars_rows": n, "duckdb_inside": n (nodules only),
"duckdb_in_lung_region": n (nodules only), "duckdb_lung_ml": [...] (scans only)}}.
"""

import json
import os
import sys

import duckdb
import polars as pl
import pyarrow.parquet as pq


def main():
    root = sys.argv[1]
    out = {}
    con = duckdb.connect()
    for name in ["scans", "nodules", "candidates", "labels", "components", "annotations"]:
        path = os.path.join(root, "index", name + ".parquet")
        t = pq.read_table(path)
        entry = {
            "columns": [[f.name, str(f.type), f.nullable] for f in t.schema],
            "rows": t.num_rows,
            "pandas_rows": len(t.to_pandas()),
            "polars_rows": pl.read_parquet(path).height,
            "duckdb_rows": con.execute(f"SELECT count(*) FROM '{path}'").fetchone()[0],
        }
        if name == "nodules":
            entry["duckdb_inside"] = con.execute(
                f"SELECT count(*) FROM '{path}' WHERE inside"
            ).fetchone()[0]
            entry["duckdb_in_lung_region"] = con.execute(
                f"SELECT count(*) FROM '{path}' WHERE in_lung_region"
            ).fetchone()[0]
        if name == "scans":
            entry["duckdb_lung_ml"] = [
                r[0]
                for r in con.execute(f"SELECT lung_ml FROM '{path}' ORDER BY series_id").fetchall()
            ]
        out[name] = entry
    print(json.dumps(out))


if __name__ == "__main__":
    main()
