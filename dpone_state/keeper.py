"""The pooled connection a thread keeps between storage calls, so a call skips the pool.

The pool's checkout and check-in (its queue and locks, the connection fairy, the reset, the
events) cost more than a loopback round trip of the storages' one-statement calls, most of it
in code that runs cold between round trips. A thread that calls the storages of an engine keeps
the connection of its last successful call, checked out, for its next one, while:

- the pool is a ``QueuePool`` without ``pool_pre_ping`` and with room: at most
  ``pool_size - 1`` threads keep one, so any other user of the pool still finds a connection;
- the connection is still good: not invalidated (by a failure on any thread: the pool's
  invalidation time), not past ``pool_recycle``; one kept longer than the engine's idle-ping
  threshold (``ping_when_idle``) is pinged first, as the pool would at checkout;
- the engine is not disposed: ``engine.dispose()`` closes every kept connection (one in use is
  closed when its call ends), and a forked child never uses its parent's.

A failed call never keeps its connection: it goes back to the pool (reset, or invalidated).
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, Pool, QueuePool

from dpone_state.backends import idle_ping_seconds, pinging_changes

__all__ = ["Keeper", "keeper_for"]


class _Slot:
    """One thread's kept connection (a checked-out fairy) and when its last call ended."""

    __slots__ = ("__weakref__", "fairy", "lock", "used")

    def __init__(self) -> None:
        self.lock = threading.Lock()  # taken briefly: the owner's calls vs ``dispose()``
        self.fairy: Any = None
        self.used = 0.0


class Keeper:
    """The connections kept from one pool of an engine, one per thread at most, shared by
    every storage on the engine."""

    def __init__(self, engine: Engine, limit: int) -> None:
        self.pool = engine.pool
        self.limit = limit
        self.disposed = False
        # Not the engine itself: the registry below is keyed weakly by it.
        self._engine = weakref.ref(engine)
        self._dialect = engine.dialect
        self._idle: tuple[int, float | None] = (-1, None)  # (pinging_changes(), threshold)
        self._local = threading.local()
        self._slots: weakref.WeakSet[_Slot] = weakref.WeakSet()
        self._guard = threading.Lock()  # the set of slots

    def checkout(self) -> Any | None:
        """This thread's kept connection, still good, taken out of its slot; ``None``: none."""
        slot: _Slot | None = getattr(self._local, "slot", None)
        if slot is None:
            return None
        with slot.lock:
            fairy, slot.fairy = slot.fairy, None
        if fairy is None or not self._good(fairy, slot.used):
            return None
        return fairy

    def checkin(self, fairy: Any) -> None:
        """Keep ``fairy`` (after a successful call) for this thread's next call, or close it
        back to the pool when this thread may not keep one."""
        slot: _Slot | None = getattr(self._local, "slot", None)
        if slot is None:
            slot = self._new_slot()
            if slot is None:
                fairy.close()
                return
        with slot.lock:
            if not self.disposed and fairy.dbapi_connection is not None:
                slot.fairy, slot.used = fairy, time.monotonic()
                return
        if self.disposed and fairy.dbapi_connection is not None:
            fairy.invalidate()  # disposed mid-call: closed now, as the kept ones were
        else:
            fairy.close()

    def dispose(self) -> None:
        """Close every kept connection (the engine was disposed); none is kept from now on."""
        self.disposed = True
        with self._guard:
            slots = list(self._slots)
        for slot in slots:
            with slot.lock:
                fairy, slot.fairy = slot.fairy, None
            if fairy is not None and fairy.dbapi_connection is not None:
                fairy.invalidate()  # closes it now: a disposed pool would only queue it

    def forget(self) -> None:
        """In a forked child: never use, close or reset the parent's connections (their sockets
        are the parent's); they stay referenced, as ``dispose(close=False)`` leaves them."""
        with self._guard:
            slots, self._slots = list(self._slots), weakref.WeakSet()
        _INHERITED.extend(slot.fairy for slot in slots if slot.fairy is not None)
        for slot in slots:
            slot.fairy = None
        self._local = threading.local()

    def _idle_seconds(self) -> float | None:
        """The engine's idle-ping threshold, looked up again only after ``ping_when_idle``."""
        changes = pinging_changes()
        if self._idle[0] != changes:
            engine = self._engine()
            self._idle = (changes, idle_ping_seconds(engine) if engine is not None else None)
        return self._idle[1]

    def _new_slot(self) -> _Slot | None:
        """A slot for this thread, if fewer than ``limit`` threads keep one (a slot ends with
        its thread)."""
        with self._guard:
            if self.disposed or len(self._slots) >= self.limit:
                return None
            slot = _Slot()
            self._slots.add(slot)
        self._local.slot = slot
        return slot

    def _good(self, fairy: Any, used: float) -> bool:
        """Whether a kept connection may serve a call now; one that may not goes back to the
        pool (which recycles or replaces it) or, failing its idle ping, is invalidated."""
        record = fairy._connection_record
        pool = self.pool
        if (
            fairy.dbapi_connection is None
            or record is None
            or pool._invalidate_time > record.starttime
            or record._soft_invalidate_time > record.starttime
            or (pool._recycle > -1 and time.time() - record.starttime > pool._recycle)
        ):
            fairy.close()  # a reset that fails invalidates it (the pool catches it)
            return False
        idle = self._idle_seconds()
        if idle is not None and time.monotonic() - used >= idle:
            try:
                alive = self._dialect.do_ping(fairy.dbapi_connection)
            except Exception as error:
                fairy.invalidate(error)
                return False
            if not alive:
                fairy.invalidate()
                return False
        return True


def _room(pool: Pool) -> int:
    """How many threads may keep a connection of ``pool`` (0: none, it goes back each call)."""
    if type(pool) is not QueuePool or isinstance(pool, AsyncAdaptedQueuePool) or pool._pre_ping:
        return 0
    return max(0, pool.size() - 1)


#: Connections a forked child inherited from its parent: referenced, never used.
_INHERITED: list[Any] = []
#: Per engine, the keeper of its current pool (``None``: its pool keeps nothing).
_KEEPERS: weakref.WeakKeyDictionary[Engine, Keeper | None] = weakref.WeakKeyDictionary()
_REGISTRY_LOCK = threading.Lock()
_MISSING: Any = object()


def keeper_for(engine: Engine) -> Keeper | None:
    """The keeper of ``engine``'s current pool; ``None`` where nothing is kept (another kind
    of pool, ``pool_pre_ping``, a pool of one)."""
    keeper = _KEEPERS.get(engine, _MISSING)
    if keeper is not _MISSING and (keeper is None or keeper.pool is engine.pool):
        return keeper  # type: ignore[no-any-return]
    with _REGISTRY_LOCK:
        keeper = _KEEPERS.get(engine, _MISSING)
        if keeper is _MISSING:  # the first storage call on this engine
            watched = engine._has_events
            event.listen(engine, "engine_disposed", _on_dispose)
            # The engine dispatches ``engine_disposed`` whatever this flag says; the flag only
            # makes Core (and the storages' direct path) look for listeners on execution.
            engine._has_events = watched
        if keeper is _MISSING or (keeper is not None and keeper.pool is not engine.pool):
            limit = _room(engine.pool)
            keeper = _KEEPERS[engine] = Keeper(engine, limit) if limit else None
    return keeper  # type: ignore[no-any-return]


def _on_dispose(engine: Engine) -> None:
    """``engine.dispose()``: close what was kept from the pool it replaced."""
    keeper = _KEEPERS.get(engine)
    if keeper is not None and keeper.pool is not engine.pool:
        keeper.dispose()


def _forget_all() -> None:
    for keeper in list(_KEEPERS.values()):
        if keeper is not None:
            keeper.forget()


os.register_at_fork(after_in_child=_forget_all)
