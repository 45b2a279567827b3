"""`import dpone_state` time (fresh interpreters, median) and proof that it imports no driver."""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

DRIVERS = ["psycopg2", "pymysql", "pyodbc", "google.cloud.bigquery", "sqlalchemy_bigquery", "hvac"]
RUNS = 21
CODE = (
    "import sys, time; t = time.perf_counter(); import {module}; "
    "print(time.perf_counter() - t); print(','.join(m for m in {drivers!r} if m in sys.modules))"
)


def once(module: str) -> tuple[float, str]:
    out = subprocess.run(
        [sys.executable, "-c", CODE.format(module=module, drivers=DRIVERS)],
        capture_output=True, text=True, check=True,
    ).stdout.split("\n")  # fmt: skip
    return float(out[0]), out[1]


def main() -> None:
    # As an installed wheel has: bytecode compiled ahead (else every fresh interpreter compiles
    # dpone_state's sources, ~45 ms, while SQLAlchemy's came compiled with its install).
    import dpone_state  # noqa: PLC0415

    package = Path(dpone_state.__file__).parent
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True)
    modules = ("sqlalchemy", "dpone_state")
    times: dict[str, list[float]] = {module: [] for module in modules}
    loaded: dict[str, str] = {}
    for _ in range(RUNS):  # alternated, so drift in the machine's speed hits both alike
        for module in modules:
            seconds, loaded[module] = once(module)
            times[module].append(seconds)
    medians = {module: statistics.median(times[module]) for module in modules}
    for module in modules:
        print(f"import {module:<12} {medians[module] * 1e3:7.1f} ms   "
              f"drivers imported: {loaded[module] or 'none'}")  # fmt: skip
    ratios = [d / s for s, d in zip(times["sqlalchemy"], times["dpone_state"], strict=True)]
    print(f"dpone_state / sqlalchemy: {statistics.median(ratios):.2f}x (median of {RUNS} pairs)")


if __name__ == "__main__":
    main()
