"""Output folders of the Spark jobs: checked before a job starts, replaced only whole after it succeeded.

A job writes into a hidden staging folder beside `--out` and swaps it in at the end, so a rerun that fails (an
all-bad input, a lost executor) leaves the old output as it was. Only entries a job writes (Spark's part files
and buckets, `_SUCCESS`, the record of what made them) are replaced; a folder holding a user's own files is
refused, and so is an `--out` that is, or holds, the job's own input. Every file operation goes through
Hadoop's FileSystem of the session, so the same code serves a local folder, HDFS and object stores.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager

from anchor_embed.errors import AnchorEmbedError
from anchor_embed.locks import alive
from anchor_embed.progress import say

META = "_anchor_embed.json"      # Spark readers skip files starting with "_"


class Folder:
    """A path on the session's Hadoop file system (local, hdfs://, s3a://), with the few operations jobs need."""

    def __init__(self, spark, path: str) -> None:
        self._jvm = spark._jvm
        p = self._jvm.org.apache.hadoop.fs.Path(str(path))
        self.fs = p.getFileSystem(spark._jsc.hadoopConfiguration())
        self.path = self.fs.makeQualified(p)
        self.given = str(path)

    def _at(self, parent, name: str, given: str) -> Folder:
        """The entry `name` of the Hadoop path `parent` on this file system, shown to users as `given`."""
        other = object.__new__(Folder)
        other._jvm, other.fs, other.given = self._jvm, self.fs, given
        other.path = self._jvm.org.apache.hadoop.fs.Path(parent, name)
        return other

    def child(self, name: str) -> Folder:
        """The entry `name` inside this folder."""
        return self._at(self.path, name, f"{self.given.rstrip('/')}/{name}")

    def sibling(self, name: str) -> Folder:
        """The entry `name` beside this one."""
        head = self.given.rstrip("/").rpartition("/")[0]
        return self._at(self.path.getParent(), name, f"{head}/{name}" if head else name)

    @property
    def uri(self) -> str:
        """The fully qualified path (file:/..., hdfs://host/...), as Spark's readers and writers take it."""
        return self.path.toString()

    def exists(self) -> bool:
        return bool(self.fs.exists(self.path))

    def is_dir(self) -> bool:
        return self.exists() and bool(self.fs.getFileStatus(self.path).isDirectory())

    def names(self) -> list[str]:
        """Names of the entries of a folder (none for a file or a missing path)."""
        return sorted(s.getPath().getName() for s in self.fs.listStatus(self.path)) if self.is_dir() else []

    def read_text(self) -> str:
        stream = self.fs.open(self.path)
        try:
            reader = self._jvm.java.io.BufferedReader(self._jvm.java.io.InputStreamReader(stream, "UTF-8"))
            return "\n".join(iter(reader.readLine, None))
        finally:
            stream.close()

    def write_text(self, text: str) -> None:
        stream = self.fs.create(self.path, True)
        try:
            stream.write(bytearray(text.encode("utf-8")))
        finally:
            stream.close()

    def delete(self) -> None:
        self.fs.delete(self.path, True)

    def rename(self, to: Folder) -> None:
        if not self.fs.rename(self.path, to.path):
            raise AnchorEmbedError(f"could not move {self.uri} to {to.uri}")


@contextmanager
def held(out: Folder, job: str) -> Iterator[None]:
    """One job at a time on `out`: a lock file beside it, made atomically by the file system (createNewFile); a
    second job is refused naming the first, so two runs never swap half-written outputs over each other. A lock
    left by a process of this host that is gone is taken over; one of another host is named for removal."""
    lock = out.sibling(f".{out.path.getName()}.lock")
    mine = {"job": job, "host": socket.gethostname(), "pid": os.getpid(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(2):
        if lock.fs.createNewFile(lock.path):
            break
        try:
            have = json.loads(lock.read_text() or "{}")
        except Exception:  # noqa: BLE001 - being written this instant, or gone
            have = {}
        if have.get("host") == mine["host"] and isinstance(have.get("pid"), int) and not alive(have["pid"]):
            lock.delete()           # its process is gone (killed): nothing is writing
            continue
        who = (f"spark {have.get('job', '?')} (pid {have.get('pid', '?')} on {have.get('host', '?')}, since "
               f"{have.get('since', '?')})" if have else "another job")
        raise AnchorEmbedError(f"--out {out.given}: {who} is writing it; wait for it to end, or remove "
                               f"{lock.given} if no job is running")
    else:
        raise AnchorEmbedError(f"--out {out.given}: could not take the lock {lock.given}")
    lock.write_text(json.dumps(mine))
    try:
        yield
    finally:
        lock.delete()


def _own(name: str) -> bool:
    """Whether a folder entry is one Spark's Parquet writer or a job writes (parts, buckets, their .crc files)."""
    return name == META or name.lstrip(".").startswith(("part-", "bucket=", "_SUCCESS", META))


def _job_of(meta: dict) -> str:
    """Which job wrote a record (older records carry no `job`: embed's name a model, scatter's do not)."""
    return meta.get("job") or ("embed" if "model_hash" in meta else "scatter")


def read_meta(out: Folder) -> dict | None:
    """The record of what made `out`, or None when there is none (or it is no JSON object)."""
    f = out.child(META)
    try:
        meta = json.loads(f.read_text()) if f.exists() else None
    except ValueError:
        return None
    return meta if isinstance(meta, dict) else None


def claim(out: Folder, job: str, made: dict | None, overwrite: bool, inputs: list[Folder]) -> None:
    """Refuse `out` before any work: when it is (or holds) an input, is a file, holds files no Spark job wrote,
    holds another job's output, or (for `made`, unless `overwrite`) output made from other inputs."""
    here = out.uri.rstrip("/")
    for given in inputs:
        there = given.uri.rstrip("/")
        if there == here or there.startswith(here + "/"):
            raise AnchorEmbedError(f"--out {out.given}: is {'the' if there == here else 'a folder holding the'} "
                                   f"input {given.given}; the job would delete what it reads (choose another --out)")
    if out.exists() and not out.is_dir():
        raise AnchorEmbedError(f"--out {out.given}: exists and is not a folder")
    names = out.names()
    if not names:
        return
    foreign = [n for n in names if not _own(n) and not n.startswith(("_", "."))]
    if foreign:
        raise AnchorEmbedError(f"--out {out.given}: holds files spark {job} did not write ({', '.join(foreign[:3])}"
                               f"{', ...' if len(foreign) > 3 else ''}); choose another --out")
    have = read_meta(out)
    if have is not None and _job_of(have) != job:
        raise AnchorEmbedError(f"--out {out.given}: holds the output of spark {_job_of(have)}; choose another --out")
    if made is None or overwrite:
        return
    if have is None:
        raise AnchorEmbedError(f"--out {out.given}: not empty and not made by spark {job}; pass --overwrite or "
                               "choose another --out")
    from anchor_embed.fingerprint import refuse_other_origin

    refuse_other_origin(out.given, have, made)


def write_whole(out: Folder, job: str, write: Callable[[str], None], meta: dict, drop: Collection[str] = ()) -> None:
    """Run `write(uri)` (Spark's writer) into a staging folder, record `meta` there, then swap it in for
    `out`; `out`'s other entries move over, and are named, but for those in `drop` (what dedup and scatter made
    from vectors replaced), removed with the old output after the swap, and named as `embed` names them."""
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    stage = out.sibling(f".{out.path.getName()}.writing-{tag}")
    try:
        write(stage.uri)
        stage.child(META).write_text(json.dumps({"job": job, **meta}, indent=1, sort_keys=True))
    except BaseException:
        stage.delete()
        raise
    kept: list[str] = []
    dropped: list[str] = []
    if out.exists():
        old = out.sibling(f".{out.path.getName()}.old-{tag}")
        out.rename(old)
        stage.rename(out)
        for name in old.names():     # after the swap: a crash here leaves them in the hidden old folder
            if _own(name):
                continue
            if name in drop:
                dropped.append(name)        # deleted with the old folder
            else:
                old.child(name).rename(out.child(name))
                kept.append(name)
        old.delete()
    else:
        stage.rename(out)
    if dropped:
        from anchor_embed.serving.embed import say_removed

        say_removed(f"spark {job}", dropped, out.given)
    if kept:
        say(f"[yellow]spark {job}[/]: kept {', '.join(kept)} in {out.given} (not written by spark {job}; if made "
            "from the output replaced, run them again)")
