"""The real-server check (scripts/mssql-server-check.sh + mssql_plan_report.py) cannot run
here (no SQL Server, no Docker daemon): it is syntax-checked and dry-run, and the plan report's
reading of the plan cache is tested on the texts SQL Server stores."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

SCRIPTS = Path(__file__).parent.parent / "scripts"
CHECK = SCRIPTS / "mssql-server-check.sh"


def _report_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("plan_report", SCRIPTS / "mssql_plan_report.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_check_script_is_valid_bash() -> None:
    subprocess.run(["bash", "-n", str(CHECK)], check=True)
    if shutil.which("shellcheck"):
        subprocess.run(["shellcheck", str(CHECK)], check=True)


def test_check_script_dry_run_covers_both_isolation_modes_and_both_drivers() -> None:
    out = subprocess.run(
        [str(CHECK), "--dry-run"], capture_output=True, text=True, check=True
    ).stdout
    lines = out.splitlines()
    assert lines[0].startswith("+ docker run -d --name dpone-state-mssql-check-")
    assert "ACCEPT_EULA=Y" in lines[0] and "mcr.microsoft.com/mssql/server:" in lines[0]
    runs = [line for line in lines if " -m pytest " in line]
    reports = [line for line in lines if "mssql_plan_report.py" in line]
    assert len(runs) == len(reports) == 4  # RCSI off/on x msodbcsql/FreeTDS
    assert sum("driver=ODBC+Driver+18+for+SQL+Server" in line for line in runs) == 2
    assert sum("driver=FreeTDS&TDS_Version=7.4" in line for line in runs) == 2
    assert all("CI=true" in line and "-k mssql" in line for line in runs)
    order = [line for line in lines if "READ_COMMITTED_SNAPSHOT" in line and "ALTER" in line]
    assert [line.split("SNAPSHOT ")[1].split()[0] for line in order] == ["OFF", "ON"]
    assert out.count("DBCC FREEPROCCACHE") == 4
    assert "Dpone-" not in out  # the throwaway password is masked


def test_check_script_refuses_unknown_arguments() -> None:
    result = subprocess.run([str(CHECK), "--bogus"], check=False, capture_output=True, text=True)
    assert result.returncode == 2 and "usage" in result.stderr


def test_plan_report_groups_statements_by_declaration() -> None:
    report = _report_module()
    merge = "MERGE INTO s.etl_xmin_state WITH (HOLDLOCK) AS target USING (VALUES (@P1, @P2))"
    rows = [
        (f"(@P1 nvarchar(4000),@P2 bigint){merge}", "0x01", 5),
        (f"(@P1 nvarchar(4000),@P2 bigint){merge}", "0x01", 7),
        ("(@P1 datetime2(7))DELETE TOP (4000) FROM s.etl_run_state WHERE x < @P1", "0x02", 1),
    ]
    summary = report.summarize(rows)
    assert len(summary) == 2
    entry = summary[next(key for key in summary if key.startswith("MERGE"))]
    assert entry["declarations"] == {"@P1 nvarchar(4000),@P2 bigint"}
    assert entry["executions"] == 12 and len(entry["plans"]) == 1
    assert report.report(summary) == 0
    rows.append((f"(@P1 nvarchar(7),@P2 int){merge}", "0x03", 1))  # pyodbc's default typing
    assert report.report(report.summarize(rows)) == 1


@pytest.mark.parametrize(
    ("text", "declaration"),
    [
        ("(@P1 nvarchar(max),@P2 float)SELECT 1", "@P1 nvarchar(max),@P2 float"),
        ("(@P1 decimal(18,2))SELECT 1", "@P1 decimal(18,2)"),
        ("SELECT 1", ""),
    ],
)
def test_plan_report_reads_parameter_declarations(text: str, declaration: str) -> None:
    assert _report_module().split_declaration(text) == (declaration, "SELECT 1")
