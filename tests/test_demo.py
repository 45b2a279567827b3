"""`make demo` tells its whole story, can run again, and `make clean` removes what it made.

The demo's script runs here with this venv (make demo gives it a light venv of its own, whose
creation is timed by hand: see README, Quickstart) in a copy of the files it needs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).parent.parent


def _run(command: list[str], cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DPONE_STATE_")}
    done = subprocess.run(
        command, check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"{command}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    return done.stdout


def test_demo_tells_the_story_twice_and_make_clean_removes_it(tmp_path: Path) -> None:
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    shutil.copy(REPO / "Makefile", tmp_path / "Makefile")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    demo = ["bash", "examples/demo.sh"]
    first = _run(["env", f"VENV={VENV}", *demo], cwd=tmp_path)
    second = _run(["env", f"VENV={VENV}", *demo], cwd=tmp_path)

    for output in (first, second):
        steps = re.findall(r"^== (\d)\.", output, flags=re.MULTILINE)
        assert steps == ["1", "2", "3", "4", "5", "6"], output
        assert "RevisionConflictError caught" in output
        assert "deleted 2 run(s)" in output  # a real prune: the two backfilled runs
        assert "XMinState(" not in output  # no raw reprs
        # The script runs under `set -e`: doctor, the last step, exited 0 (nothing wrong).
    assert "stored before this run: none" in first
    assert "stored before this run: xmin 1,350, revision 2" in second  # it went on
    assert (tmp_path / ".demo" / "dpone_state.db").is_file()

    _run(["make", "clean"], cwd=tmp_path)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
