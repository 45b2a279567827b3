"""`import dpone_state` time (fresh interpreters, median) and proof that it imports no driver."""

from __future__ import annotations

import statistics
import subprocess
import sys

DRIVERS = ["psycopg2", "pymysql", "pyodbc", "google.cloud.bigquery", "sqlalchemy_bigquery", "hvac"]
CODE = (
    "import sys, time; t = time.perf_counter(); import {module}; "
    "print(time.perf_counter() - t); print(','.join(m for m in {drivers!r} if m in sys.modules))"
)


def measure(module: str, runs: int = 15) -> tuple[float, str]:
    times, loaded = [], ""
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", CODE.format(module=module, drivers=DRIVERS)],
            capture_output=True, text=True, check=True,
        ).stdout.split("\n")  # fmt: skip
        times.append(float(out[0]))
        loaded = out[1]
    return statistics.median(times), loaded


def main() -> None:
    for module in ("sqlalchemy", "dpone_state"):
        seconds, loaded = measure(module)
        print(f"import {module:<12} {seconds * 1e3:7.1f} ms   drivers imported: {loaded or 'none'}")


if __name__ == "__main__":
    main()
