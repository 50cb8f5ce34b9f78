"""Which thread may touch pipeline state, checked.

The threading model (docs/design.md): everything that holds pipeline state — the batch assembler,
the spool, the buffer store and ring, the publisher's decisions, the poller's ledgers — lives on
the event loop's thread and is called only from there. Bus threads run only their transport; paho's
thread only marshals callbacks to the loop (`call_soon_threadsafe`); `asyncio.to_thread` runs only
work that touches no pipeline state (loading a config file, closing a paho client).

A stateful class calls `confine(self)` in its constructor and marks its entry points `@confined`.
With checking on (asyncio debug mode: `PYTHONASYNCIODEBUG=1`, `python -X dev`, or `set_checking`),
a call from another thread raises `ForeignThreadError` at once instead of corrupting state
silently; with it off the check costs one global lookup per call.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_checking = bool(os.environ.get("PYTHONASYNCIODEBUG")) or sys.flags.dev_mode
OWNER = "_owner_thread"


class ForeignThreadError(RuntimeError):
    """Pipeline state was called from a thread that does not own it (a programming error)."""


def set_checking(on: bool) -> None:
    """Turn the owner check on or off (the daemon follows the event loop's debug flag)."""
    global _checking
    _checking = on


def checking() -> bool:
    return _checking


def confine(obj: object) -> None:
    """`obj` belongs to the calling thread from now on."""
    object.__setattr__(obj, OWNER, threading.get_ident())


def check_owner(obj: object, what: str) -> None:
    owner = getattr(obj, OWNER, None)
    here = threading.get_ident()
    if owner is not None and owner != here:
        raise ForeignThreadError(f"{type(obj).__name__}.{what} called from thread {threading.current_thread().name} "
                                 f"({here}); it belongs to thread {owner}: hand the call to the event loop")


def confined(method: F) -> F:
    """Mark a method as callable only from the owner's thread (checked when checking is on)."""

    @functools.wraps(method)
    def wrapper(self: object, *args: Any, **kwargs: Any) -> Any:
        if _checking:
            check_owner(self, method.__name__)
        return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
