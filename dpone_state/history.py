"""The packaged migration scripts' revisions (head, known ids, the chain) without a database.

A thin read of Alembic's ``ScriptDirectory`` over ``dpone_state.migrate``'s script location,
for ``dpone-state history`` and ``doctor``.
"""

from __future__ import annotations

from dataclasses import dataclass

from alembic.script import ScriptDirectory
from alembic.util import CommandError

from dpone_state.migrate import SCRIPT_LOCATION

__all__ = ["Revision", "head_revision", "is_known_revision", "revisions"]


@dataclass(frozen=True)
class Revision:
    """One migration script: its id, its parent, its message and whether it is the head."""

    revision: str
    down_revision: str | None
    message: str
    is_head: bool


def _scripts() -> ScriptDirectory:
    return ScriptDirectory(SCRIPT_LOCATION)


def head_revision() -> str | None:
    """The newest revision of the packaged migrations."""
    return _scripts().get_current_head()


def is_known_revision(revision: str) -> bool:
    """Whether ``revision`` is one of the packaged migrations (else a newer package wrote it)."""
    try:
        return _scripts().get_revision(revision) is not None
    except CommandError:
        return False


def revisions() -> list[Revision]:
    """Every packaged revision, newest first."""
    scripts = _scripts()
    heads = set(scripts.get_heads())
    result = []
    for script in scripts.walk_revisions():
        down = script.down_revision
        result.append(
            Revision(
                revision=script.revision,
                down_revision=down if isinstance(down, str) or down is None else ",".join(down),
                message=(script.doc or "").strip(),
                is_head=script.revision in heads,
            )
        )
    return result
