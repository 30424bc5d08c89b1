"""The review page's pieces: search by id or nickname, the review log, and the page itself.

A reviewer marks a pair "same owner" or "not related"; each mark is a line of a JSONL log (time, reviewer,
the two ids, the verdict) that `dedup --reviewed LOG` honours: confirmed pairs always share a group,
rejected pairs never do.
"""

from __future__ import annotations

import bisect
import json
import time
from pathlib import Path

from anchor_embed.data.key_file import read_text
from anchor_embed.errors import AnchorEmbedError

VERDICTS = ("same_owner", "not_related")
PAGE = Path(__file__).with_name("review_page.html")


def _nickname_index(look) -> tuple[list[str], list[str]]:
    """(lowercased nicknames sorted, their anchor_ids), built once per opened index."""
    cached = getattr(look, "_nickname_index", None)
    if cached is None:
        labels = look.keys.labels()
        pairs = sorted((str(labels[i].get("nickname") or "").lower(), look.keys.key(i)) for i in range(len(look.keys)))
        cached = ([p[0] for p in pairs], [p[1] for p in pairs])
        look._nickname_index = cached
    return cached


def search_streamers(look, query: str, limit: int = 10) -> list[dict]:
    """Streamers whose id or nickname starts with `query` (case-insensitive), then close ids: for the search box."""
    q = query.strip().lower()
    if not q:                           # every name starts with "": ten arbitrary streamers were the answer
        return []
    found: dict[str, None] = {}
    if look.keys.row(query.strip()) is not None:
        found[query.strip()] = None
    names, ids = _nickname_index(look)
    i = bisect.bisect_left(names, q)
    while i < len(names) and names[i].startswith(q) and len(found) < limit:
        found[ids[i]] = None
        i += 1
    for k in look.keys.close_to(query.strip(), n=limit):
        if len(found) >= limit:
            break
        found[k] = None
    return [{"anchor_id": a, **look.label(a)} for a in list(found)[:limit]]


def append_review(log: Path, a: str, b: str, verdict: str, reviewer: str, look=None) -> dict:
    """Append one mark to the review log (one JSON object a line); unknown ids or verdicts are refused, and so is
    a log whose first line is no mark (the full check, `claim_review_log`, is the server's at start)."""
    if verdict not in VERDICTS:
        raise AnchorEmbedError(f"verdict {verdict!r}: choose {' or '.join(VERDICTS)}")
    if a == b:
        raise AnchorEmbedError("a pair needs two different streamers")
    if look is not None:
        for x in (a, b):
            if look.keys.row(x) is None:
                raise AnchorEmbedError(f"anchor_id {x!r} is not in the index")
    if not starts_as_log(log):
        raise AnchorEmbedError(f"review log {log}: its first line is not a review mark; no mark appended to it "
                               "(serve again with another --review-log)")
    row = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "reviewer": reviewer or "anonymous", "a": a, "b": b,
           "verdict": verdict}
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as f:   # one write of one line: appends from parallel requests stay whole
        f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return row


def parse_mark(line: str) -> tuple[frozenset, str]:
    """(pair, verdict) of one review log line; ValueError saying why it is no mark."""
    try:
        row = json.loads(line)
        pair, verdict = frozenset((row["a"], row["b"])), row["verdict"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise ValueError("not a review line (time, reviewer, a, b, verdict)") from None
    if verdict not in VERDICTS or len(pair) != 2:
        raise ValueError(f"verdict {verdict!r} on {sorted(pair, key=str)}")
    return pair, verdict


def starts_as_log(log: Path) -> bool:
    """Whether marks may be appended to `log`: no file yet, or one whose first line that is not blank (if any) is a
    mark; only that line is read, so each mark stays cheap."""
    if not log.is_file():
        return True
    with open(log, "rb") as f:
        first = next((raw for raw in f if raw.strip()), None)
    if first is None:
        return True
    try:
        return _is_mark(first.decode("utf-8-sig"))
    except UnicodeDecodeError:
        return False


def claim_review_log(log: Path) -> None:
    """Refuse, before serving, an existing file that is not empty and not a review log (every line a mark as
    `append_review` writes it): marks appended to a run's config.json left it no JSON. The rule of
    `output_file.claim` for a command's --out, for a file that is appended to."""
    if not log.is_file() or log.stat().st_size == 0:
        return
    try:
        read_reviews(log)
    except AnchorEmbedError as exc:
        lines = [x for x in read_text(log).split("\n") if x.strip()]
        if len(lines) > 1 and all(_is_mark(x) for x in lines[:-1]):     # then the last line is the bad one
            raise AnchorEmbedError(f"review log {log}: its last line is no mark, the rest are (a line cut short by "
                                   "a crash while appending?): remove that line to go on") from None
        raise AnchorEmbedError(f"review log {exc}; marks are appended only to a review log or a new file: give "
                               "another --review-log") from None


def _is_mark(line: str) -> bool:
    """Whether one line of a log is a review mark."""
    try:
        parse_mark(line)
    except ValueError:
        return False
    return True


def read_reviews(log: str | Path) -> tuple[set[frozenset], set[frozenset]]:
    """(confirmed pairs, rejected pairs) from a review log; the latest verdict on a pair wins."""
    log = Path(log)
    if not log.is_file():
        raise AnchorEmbedError(f"{log}: no such review log")
    last: dict[frozenset, str] = {}
    for n, line in enumerate(read_text(log).split("\n"), 1):
        if not line.strip():
            continue
        try:
            pair, verdict = parse_mark(line)
        except ValueError as exc:
            raise AnchorEmbedError(f"{log}: line {n}: {exc}") from None
        last[pair] = verdict
    return ({p for p, v in last.items() if v == "same_owner"}, {p for p, v in last.items() if v == "not_related"})


def page_html() -> str:
    return PAGE.read_text(encoding="utf-8")
