"""Declared parameter types and cached plans per statement, read from a real SQL Server.

Run after the behaviour suite (scripts/mssql-server-check.sh does): every statement dpone-state
sends should reach the server with ONE parameter declaration (``(@P1 nvarchar(4000),@P2
bigint)MERGE …``) and so ONE cached plan, however long its strings or large its integers, and
no NULL left undeclared. Prints one line per statement; exits 1 when a statement has more than
one declaration.

    python scripts/mssql_plan_report.py 'mssql+pyodbc://sa:PW@127.0.0.1:14330/dpone_test?driver=…'
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from collections.abc import Iterable

#: The statements of the state tables in the plan cache (sys.dm_exec_sql_text of each plan).
QUERY = """
SELECT st.text, CONVERT(VARCHAR(130), qs.plan_handle, 1) AS plan_handle, qs.execution_count
FROM sys.dm_exec_query_stats AS qs
CROSS APPLY sys.dm_exec_sql_text(qs.sql_handle) AS st
WHERE st.text LIKE '%etl[_]xmin[_]state%' OR st.text LIKE '%etl[_]run[_]state%'
"""

_DECLARATION = re.compile(
    r"^\((@\w+ [^()]*(?:\([^()]*\))?[^()]*(?:,@\w+ [^()]*(?:\([^()]*\))?)*)\)"
)


def split_declaration(text: str) -> tuple[str, str]:
    """``(declaration, statement)`` of a parameterized statement's text (``""`` if none)."""
    found = _DECLARATION.match(text.strip())
    if found is None:
        return "", text.strip()
    return found.group(1), text.strip()[found.end() :].strip()


def summarize(rows: Iterable[tuple[str, str, int]]) -> dict[str, dict[str, set[str] | int]]:
    """Per statement: its distinct declarations, distinct plans and executions."""
    out: dict[str, dict[str, set[str] | int]] = defaultdict(
        lambda: {"declarations": set(), "plans": set(), "executions": 0}
    )
    for text, plan, executions in rows:
        declaration, statement = split_declaration(text)
        entry = out[" ".join(statement.split())[:160]]
        entry["declarations"].add(declaration)  # type: ignore[union-attr]
        entry["plans"].add(plan)  # type: ignore[union-attr]
        entry["executions"] = int(entry["executions"]) + int(executions)  # type: ignore[call-overload]
    return dict(out)


def report(summary: dict[str, dict[str, set[str] | int]]) -> int:
    """Print the summary; 1 when a statement was declared more than one way."""
    worst = 0
    for statement, entry in sorted(summary.items()):
        declarations = sorted(entry["declarations"])  # type: ignore[arg-type]
        plans = len(entry["plans"])  # type: ignore[arg-type]
        print(
            f"{len(declarations)} declaration(s), {plans} plan(s), "
            f"{entry['executions']} execution(s): {statement}"
        )
        for declaration in declarations:
            print(f"    ({declaration})")
        worst = max(worst, len(declarations))
    return 1 if worst > 1 else 0


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    import sqlalchemy as sa  # noqa: PLC0415

    engine = sa.create_engine(argv[1])
    with engine.connect() as conn:
        rows = [(r[0], r[1], r[2]) for r in conn.exec_driver_sql(QUERY)]
    if not rows:
        print("no statement of the state tables in the plan cache", file=sys.stderr)
        return 1
    return report(summarize(rows))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
