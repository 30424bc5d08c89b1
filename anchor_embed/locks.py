"""One writer per output folder: a lock file that a second writer sees and refuses, in one line.

The lock records who holds it (pid, host, since); a lock left by a process that no longer runs on this
host is stale and taken over, so a killed job never blocks its own `--resume`.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from anchor_embed.errors import AnchorEmbedError

LOCK = ".lock"


def alive(pid: int) -> bool:
    """Whether process `pid` runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def exclusive(folder: str | Path, what: str) -> Iterator[Path]:
    """Hold `folder`/.lock while the block runs; another live holder is one clear error."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S"), "what": what}
    # the lock appears with its holder already written (a hard link of a finished temp file), so a process
    # killed while taking it never leaves an empty lock that nobody can tell is stale
    tmp = folder / f"{LOCK}.{me['pid']}.{threading.get_ident()}.tmp"
    tmp.write_text(json.dumps(me))
    try:
        _take(lock, tmp, folder)
    finally:
        tmp.unlink(missing_ok=True)
    try:
        yield lock
    finally:
        lock.unlink(missing_ok=True)


def _take(lock: Path, tmp: Path, folder: Path) -> None:
    """Link `tmp` as `lock`; a lock of a dead process on this host is taken over, a live one is an error."""
    for _ in range(2):
        try:
            os.link(tmp, lock)
        except FileExistsError:
            try:
                holder = json.loads(lock.read_text())
            except (OSError, json.JSONDecodeError):
                holder = {}
            if _stale(holder):
                lock.unlink(missing_ok=True)   # left by a process that is gone: stale
                continue
            raise AnchorEmbedError(
                f"{folder}: another {holder.get('what', 'job')} is writing here (pid {holder.get('pid', '?')} on "
                f"{holder.get('host', '?')} since {holder.get('since', '?')}); wait for it, or remove {lock} if it "
                "is gone") from None
        return


def writer(folder: str | Path) -> dict | None:
    """The live holder of `folder`'s lock ({pid, host, since, what}), None when nobody writes there (no lock, or
    one left by a process gone from this host): readers refuse a folder while a writer is half-way."""
    try:
        holder = json.loads((Path(folder) / LOCK).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return holder if isinstance(holder, dict) and not _stale(holder) else None


def _stale(holder: dict) -> bool:
    """Whether a lock's holder is a process gone from this host (a holder on another host cannot be checked)."""
    return holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int) \
        and not alive(holder["pid"])
