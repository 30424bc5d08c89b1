"""The Spark session of a job run by `anchor-embed spark ...`, and Spark's failures said in one line.

A session of its own starts Spark's JVM with its stderr through a pipe this process reads: the lines the JVM
prints while it starts (its logging set-up, host-name warnings) are held back, and used for the reason when it
fails to start; once the session is up, everything passes through (the stage progress line on a terminal,
what Python workers print). Spark's log lines stay off unless asked (ANCHOR_EMBED_SPARK_LOG=WARN), so a failed
read does not print pages of Java stack before the one line that says what went wrong.
"""

from __future__ import annotations

import os
import re
import sys
import threading

from anchor_embed.errors import AnchorEmbedError

# the master URLs Spark takes (SparkContext's own check, done before a JVM starts so the reason is said)
MASTER = re.compile(r"local(\[(\*|\d+)(,\s*\d+)?\])?|local-cluster\[\d+,\s*\d+,\s*\d+\]|spark://\S+|yarn|"
                    r"k8s://\S+|mesos://\S+")


class _HeldStderr:
    """The JVM's stderr, read in a thread: held while Spark starts, passed through to ours afterwards."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        self.held: list[bytes] = []
        self.passing = False
        self.lock = threading.Lock()
        threading.Thread(target=self._pump, daemon=True, name="spark-stderr").start()

    def _pump(self) -> None:
        with os.fdopen(self.read_fd, "rb", buffering=0) as pipe:
            for chunk in iter(lambda: pipe.read(65536), b""):
                with self.lock:
                    if not self.passing:
                        self.held.append(chunk)
                        continue
                try:        # never stop reading: a JVM whose stderr pipe fills up blocks
                    out = getattr(sys.stderr, "buffer", None)
                    if out is not None:
                        out.write(chunk)
                        out.flush()
                    else:
                        sys.stderr.write(chunk.decode("utf-8", "replace"))
                except (OSError, ValueError):   # our stderr closed or replaced: the chunk is dropped
                    pass

    def started(self) -> None:
        """Spark is up: drop what it said while starting, pass the rest through."""
        with self.lock:
            self.held, self.passing = [], True

    def said(self) -> list[str]:
        """The lines held so far."""
        with self.lock:
            return b"".join(self.held).decode("utf-8", "replace").splitlines()


def _launch(options: dict[str, str]) -> _HeldStderr | None:
    """Start the JVM gateway with its stderr held (pyspark's `popen_kwargs`); None when one runs already or
    this pyspark cannot (then Spark starts as it always does)."""
    try:
        from pyspark import SparkConf, SparkContext
        from pyspark.java_gateway import launch_gateway
    except ImportError:
        return None
    if SparkContext._gateway is not None:
        return None
    conf = SparkConf(loadDefaults=False)
    for key, value in options.items():
        conf.set(key, value)
    held = _HeldStderr()
    try:
        gateway = launch_gateway(conf, popen_kwargs={"stderr": held.write_fd})
    except TypeError:                       # a pyspark without popen_kwargs
        os.close(held.write_fd)
        return None
    except Exception as exc:                # the JVM exited: say why, from what it printed
        os.close(held.write_fd)
        raise AnchorEmbedError(f"Spark did not start ({_startup_reason(held, exc)})") from None
    os.close(held.write_fd)                 # the JVM holds its own copy
    SparkContext._ensure_initialized(gateway=gateway, conf=conf)
    return held


def _startup_reason(held: _HeldStderr, exc: Exception) -> str:
    """The last line the JVM printed that names an error, else the exception's own reason; with a hint when
    there is no Java at all."""
    import shutil
    import time

    time.sleep(0.2)                         # the pump may still be reading the JVM's last words
    errors = [line.strip() for line in held.said()
              if re.search(r"Exception|Error|error:|must|not found|not set|No such file|cannot|Invalid", line)]
    reason = errors[-1] if errors else java_reason(exc)
    reason = re.sub(r"^(Exception in thread \"\w+\" )?[\w.$]+(Exception|Error): ", "", reason)
    reason = re.sub(r"^\S*/bin/spark-\w+: line \d+: ", "", reason)   # the launcher script's own prefix
    if not shutil.which("java") and not os.environ.get("JAVA_HOME"):
        reason += "; Spark needs Java 17+ (no `java` on PATH)"
    return reason[:300]


def session(master: str | None = None, app: str = "anchor-embed"):
    """A SparkSession: `master` when given; the submitter's when run by spark-submit; else local[*]."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise AnchorEmbedError("Spark jobs need pyspark: pip install 'anchor-embed[spark]'") from None
    if master and not MASTER.fullmatch(master):
        raise AnchorEmbedError(f"--master {master!r}: not a Spark master URL (local, local[N], local[*], "
                               "spark://HOST:PORT, yarn, k8s://URL)")
    options = {"spark.app.name": app, "spark.sql.execution.arrow.pyspark.enabled": "true"}
    held = None
    if master or "PYSPARK_GATEWAY_PORT" not in os.environ:       # a session of its own, not spark-submit's
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)   # local workers run this interpreter
        level = os.environ.get("ANCHOR_EMBED_SPARK_LOG", "OFF")
        options.update({"spark.master": master or "local[*]", "spark.log.level": level,
                        # Spark's own stage progress line on a terminal (the jobs are silent otherwise)
                        "spark.ui.showConsoleProgress": "true" if sys.stderr.isatty() else "false"})
        if level.upper() == "OFF" and "PYSPARK_GATEWAY_PORT" not in os.environ:
            held = _launch(options)
    builder = SparkSession.builder
    for key, value in options.items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except Exception as exc:  # no Java, a master that does not answer: one line
        if "stopped SparkContext" in str(exc):   # Spark gave up on the master, with its log lines off
            raise AnchorEmbedError(f"Spark did not start: the master {options.get('spark.master', master)} did not "
                                   "take the application (is it running and reachable from here?)") from None
        raise AnchorEmbedError(f"Spark did not start ({_startup_reason(held, exc) if held else java_reason(exc)})"
                               ) from None
    if held is not None:
        held.started()
    return spark


def java_reason(exc: Exception) -> str:
    """What a Spark failure says went wrong, in one line: the innermost Java cause, else Spark's own error
    class and message, else the first line (py4j's is only 'An error occurred while calling o30.parquet.')."""
    text = str(exc)
    causes = re.findall(r"Caused by: [\w.$]+: ([^\n]+)", text)
    if causes:
        return causes[-1].strip()[:200]
    thrown = re.search(r"^: [\w.$]+: ([^\n]+)", text, re.M)     # py4j's second line names the Java exception
    if thrown:
        return thrown.group(1).strip()[:200]
    named = re.search(r"\[[A-Z_.]+\][^\n]+", text)
    return (named.group(0) if named else text.strip().splitlines()[0] if text.strip() else type(exc).__name__)[:200]
