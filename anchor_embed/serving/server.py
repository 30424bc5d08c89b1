"""`anchor-embed serve`: the index over HTTP (FastAPI), a review page, Prometheus metrics, hot index swaps.

The served index is swapped whole when a new `index build` lands in its folder (meta.json is written last,
and the build holds the folder's lock while it writes), so requests in flight finish on the old one and
none is dropped. Lookups never import torch; `POST /embed` loads the model only when `--model` is given, and
that model must be the one the index's vectors were made by. Heavy work (search, explain, embed) runs for at most
`workers` requests at a time (default one, with every core's threads), so parallel clients neither oversubscribe
the cores nor fight over the GIL: 12 parallel heavy lookups took 7-14 s on 2 cores, 4.5 s one after another. A
request whose client has gone while it waited its turn is dropped, not run (counted as status 499).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from starlette.requests import Request  # here, not in create_app: FastAPI reads routes' annotations here

from anchor_embed.errors import AnchorEmbedError
from anchor_embed.locks import writer
from anchor_embed.serving.similar import Lookup, as_ids

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# Most ids a `POST /similar` and records a `POST /embed` take in one request: 20,000 ids at k=1000 once ran for
# minutes in 6 GB and held off SIGTERM; larger batches are refused with 413 (split them).
MAX_IDS = 1000
MAX_RECORDS = 1000
MAX_K = 1000
# Most neighbours (ids x k) one request may ask for: 1000 ids at k=1000 with explain made a 200 MB answer in 157 s.
MAX_NEIGHBOURS = 50_000
# Requests doing heavy work at once: a lookup's labels and explanations are Python under the GIL, so two at once
# on 2 cores ran no faster than one and, beside other load, took twice the CPU.
WORKERS = 1
# Status counted in /metrics for a request whose client went away before its answer (nginx's "client closed").
CLIENT_GONE = 499


def cores() -> int:
    """CPUs this process may run on (shared by the threads of the `workers` requests running at once)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:                                       # not on Linux
        return os.cpu_count() or 1


def model_mismatch(meta: dict, folder: Path, model: Path, model_id: str) -> str | None:
    """One line when the index's vectors were not made by `model` (hash `model_id`): /embed would answer with
    vectors incomparable with the index's; None when they were (or the index records no model)."""
    have = meta.get("model_hash")
    if have is None or have == model_id:
        return None
    return (f"index {folder} holds vectors of model {have} (made by {meta.get('model_dir')}), not of --model {model} "
            f"({model_id}): serve it with the run that made it, or rebuild the index from this model's vectors")


class ServedIndex:
    """The Lookup requests are answered from, replaced atomically when the folder holds a new build."""

    def __init__(self, folder: str | Path, poll: float = 1.0, model: Path | None = None,
                 model_id: str | None = None) -> None:
        self.folder = Path(folder)
        self.model, self.model_id = model, model_id
        self._lookup = Lookup.open(self.folder)
        self.media_root = recorded_media_root(self._lookup.meta)
        self._stamp = self._read_stamp()
        if model is not None and model_id is not None:
            wrong = model_mismatch(self._lookup.meta, self.folder, model, model_id)
            if wrong:
                raise AnchorEmbedError(wrong)
        self.swaps = 0
        self._guard = threading.Lock()
        self._stop = threading.Event()
        if poll > 0:
            threading.Thread(target=self._watch, args=(poll,), daemon=True).start()

    def _read_stamp(self) -> tuple[int, int]:
        st = (self.folder / "meta.json").stat()
        return st.st_mtime_ns, st.st_size

    @property
    def lookup(self) -> Lookup:
        return self._lookup

    def refresh(self) -> bool:
        """Load a newly built index if one has landed (and no build is still writing); True when swapped. A lock
        left by a build that is gone (killed) does not hold the swap off, as it does not hold off the next build."""
        if writer(self.folder) is not None:
            return False
        try:
            stamp = self._read_stamp()
        except OSError:
            return False
        if stamp == self._stamp:
            return False
        new = Lookup.open(self.folder)          # refuses files of two builds: retried at the next poll
        if self.model is not None and self.model_id is not None:
            wrong = model_mismatch(new.meta, self.folder, self.model, self.model_id)
            if wrong:                                 # keep the old index, which /embed's vectors match
                from anchor_embed.progress import say

                self._stamp = stamp
                say(f"[yellow]serve[/]: new build not swapped in: {wrong}")
                return False
        with self._guard:
            self._lookup, self._stamp = new, stamp
            self.media_root = recorded_media_root(new.meta)
            self.swaps += 1
        return True

    def _watch(self, poll: float) -> None:
        while not self._stop.wait(poll):
            try:
                self.refresh()
            except Exception:  # a half-written build is retried at the next poll; the old index keeps serving
                continue

    def close(self) -> None:
        self._stop.set()


class Metrics:
    """Request counters and a latency histogram, rendered in the Prometheus text format."""

    def __init__(self) -> None:
        self.requests: Counter = Counter()
        self.buckets: Counter = Counter()
        self.total_seconds = 0.0
        self.count = 0
        self._guard = threading.Lock()

    def observe(self, route: str, status: int, seconds: float) -> None:
        with self._guard:
            self.requests[(route, status)] += 1
            self.count += 1
            self.total_seconds += seconds
            for b in LATENCY_BUCKETS:
                if seconds <= b:
                    self.buckets[b] += 1

    def render(self, served: ServedIndex) -> str:
        lines = ["# HELP anchor_embed_requests_total Requests answered, by route and status.",
                 "# TYPE anchor_embed_requests_total counter"]
        lines += [f'anchor_embed_requests_total{{route="{r}",status="{s}"}} {n}' for (r, s), n in
                  sorted(self.requests.items())]
        lines += ["# HELP anchor_embed_request_seconds Request latency.", "# TYPE anchor_embed_request_seconds histogram"]
        lines += [f'anchor_embed_request_seconds_bucket{{le="{b}"}} {self.buckets[b]}' for b in LATENCY_BUCKETS]
        lines += [f'anchor_embed_request_seconds_bucket{{le="+Inf"}} {self.count}',
                  f"anchor_embed_request_seconds_sum {self.total_seconds:.6f}",
                  f"anchor_embed_request_seconds_count {self.count}",
                  "# HELP anchor_embed_index_vectors Vectors in the served index.", "# TYPE anchor_embed_index_vectors gauge",
                  f"anchor_embed_index_vectors {served.lookup.index.ntotal}",
                  "# HELP anchor_embed_index_swaps_total New builds picked up.", "# TYPE anchor_embed_index_swaps_total counter",
                  f"anchor_embed_index_swaps_total {served.swaps}"]
        return "\n".join(lines) + "\n"


def recorded_media_root(meta: dict) -> Path | None:
    """The media root the indexed vectors were embedded with: recorded in the index's meta.json by its build, or
    (an index built before it was) read from the vectors folder's fingerprint.json, while that folder exists."""
    from anchor_embed.serving.index import embedded_media_root

    root = meta.get("media_root") or (embedded_media_root(Path(meta["vectors_dir"]))
                                      if isinstance(meta.get("vectors_dir"), str) else None)
    return Path(root) if root else None


def check_review_log(log: Path) -> None:
    """Refuse a review log path no mark can be appended to (a folder, or under a file), before serving."""
    if log.is_dir():
        raise AnchorEmbedError(f"review log {log}: is a folder; give a file path (marks are appended to it)")
    parent = next((p for p in log.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise AnchorEmbedError(f"review log {log}: {parent} is a file, not a folder")


def route_label(app, scope: dict) -> str:
    """The route template a request is counted under in /metrics ("/similar/{anchor_id}"), also for one refused
    before routing (401); "unmatched" for a path no route has, so scanned paths add no series."""
    route = scope.get("route")
    if route is not None:
        return getattr(route, "path", "unmatched")
    from starlette.routing import Match

    for r in app.router.routes:
        if r.matches(scope)[0] != Match.NONE:
            return getattr(r, "path", "unmatched")
    return "unmatched"


MEDIA_COOKIE = "anchor_embed_token"      # the review page's token for its <img> requests, which send no header


def media_cookie_ok(path: str, cookie: str | None, token: str) -> bool:
    """Whether a GET of a frame carries `token` in the review page's cookie (an <img> cannot send an
    Authorization header: every frame of a served page with --token was a 401); for /media/ paths only."""
    from urllib.parse import unquote

    return path.startswith("/media/") and cookie is not None and \
        hmac.compare_digest(unquote(cookie).encode("utf-8", "replace"), token.encode("utf-8"))


def bearer_ok(header: str | None, token: str) -> bool:
    """Whether an Authorization header carries `token` as a Bearer credential (scheme in any case, RFC 7235;
    compared in constant time)."""
    parts = (header or "").split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        return False
    return hmac.compare_digest(parts[1].encode("latin-1", "replace"), token.encode("utf-8"))


def too_much_work(ids: int, k: int, limit: int) -> None:
    """HTTP 413 naming the limit and the product when ids x k is over it: the answer's size and the time to
    compute it grow with it, and a client gone away does not stop the computation."""
    if ids * k > limit:
        from fastapi import HTTPException

        raise HTTPException(413, f"{ids} ids x k {k} = {ids * k:,} neighbours in one request: at most {limit:,} "
                                 "(--max-neighbours); lower k or split the batch")


def frame_warnings(records: list[dict], media: Path) -> list[dict]:
    """Each frame of `records` that is not read (outside the media root, or no file there), with its record's
    id: the vector is made without it, which a client should see in the answer, not only in the server log."""
    from anchor_embed.data.media import inside_root

    out = []
    for r, anchor_id in zip(records, as_ids([r.get("anchor_id") for r in records]), strict=True):
        for rel in r.get("frames") or []:
            p = inside_root(str(rel), media)
            if p is None:
                out.append({"anchor_id": anchor_id, "frame": str(rel), "problem": "outside the media root: not read"})
            elif not p.is_file():
                out.append({"anchor_id": anchor_id, "frame": str(rel), "problem": "not found under the media root"})
    return out


def meta_warnings(records: list[dict], spec: str | None) -> list[dict]:
    """Per record, the `meta` fields the model reads as tags (its `--meta-tags` spec) that the record lacks, or
    holds no number for where the model buckets numbers: its vector is made without those tags, so it differs
    from the one the same streamer got with them (the server log said so only when no record had them)."""
    from anchor_embed.features.meta_tags import parse_meta_tags, tags_of_meta

    fields = parse_meta_tags(spec)
    if not fields:
        return []
    out = []
    for r, anchor_id in zip(records, as_ids([r.get("anchor_id") for r in records]), strict=True):
        meta = r.get("meta") if isinstance(r.get("meta"), dict) else {}
        _, bad = tags_of_meta(meta, fields)
        missing = [f.name for f in fields if meta.get(f.name) is None or meta.get(f.name) in ("", [])]
        if missing:
            out.append({"anchor_id": anchor_id, "meta": missing, "problem": "missing from the record's meta: the "
                        "model reads these fields as tags, and the vector is made without them"})
        if bad:
            out.append({"anchor_id": anchor_id, "meta": bad, "problem": "not a number where the model buckets "
                        "numbers: the vector is made without these tags"})
    return out


def listed_frame(look: Lookup, anchor_id: str | None, path: str, root: Path) -> Path | None:
    """The file `path` names under `root` when the indexed streamer `anchor_id` lists it among its frames (as
    the index's labels record them, which the review page shows), else None: /media served any file under the
    media root, the dataset's interaction log and ID embeddings too."""
    from anchor_embed.data.media import inside_root

    if not anchor_id or look.keys.row(anchor_id) is None:
        return None
    f = inside_root(path, root)
    frames = look.label(anchor_id).get("frames") or []
    if f is None or f not in {inside_root(str(x), root) for x in frames if isinstance(x, str)}:
        return None
    return f if f.is_file() else None


def check_token(token: str | None) -> None:
    """Refuse, in one line, a token that would not do what --token says: an empty one turned the check off without
    a word, and one holding whitespace cannot be sent in an `Authorization: Bearer` header (every client was
    refused). None is no token: no check."""
    if token is None:
        return
    if token == "":
        raise AnchorEmbedError("--token (or ANCHOR_EMBED_TOKEN) is empty, which would require no token: give one, "
                               "or leave both unset to serve without")
    if any(c.isspace() for c in token):
        raise AnchorEmbedError("--token (or ANCHOR_EMBED_TOKEN) holds whitespace, which an `Authorization: Bearer` "
                               "header cannot carry (every client would be refused): give a token without")


class HeavySlots:
    """At most `workers` requests doing heavy work at once, the others waiting their turn in arrival order; one
    whose client has gone while it waited is dropped before it takes a slot: 5 clients giving up after a second
    still had their 1,000-id explains run, a lookup behind them waited 13 s and a SIGTERM 15 s."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._loop: asyncio.AbstractEventLoop | None = None
        self._free: asyncio.Semaphore | None = None

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()       # an asyncio semaphore belongs to one loop (a test client makes one each)
        if self._loop is not loop or self._free is None:
            self._loop, self._free = loop, asyncio.Semaphore(self.workers)
        return self._free

    async def take(self, gone: asyncio.Future) -> bool:
        """Wait for a slot (True: hold it, give it back with `give`), or until `gone` (the client left) is done
        (False, no slot held)."""
        turn = asyncio.ensure_future(self._semaphore().acquire())
        try:
            await asyncio.wait({turn, gone}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:                   # this request cancelled: no slot outlives it
            self._drop(turn)
            raise
        if gone.done():
            self._drop(turn)                    # a slot taken at the same moment goes to the next in line
            return False
        return True

    def _drop(self, turn: asyncio.Future) -> None:
        """Give back the slot `turn` took, or stop it waiting for one."""
        if turn.done() and not turn.cancelled():
            self.give()
        else:
            turn.cancel()                       # asyncio's semaphore passes a slot it had just handed over on

    def give(self) -> None:
        assert self._free is not None
        self._free.release()


async def client_gone(request: Request) -> None:
    """Return when the client of `request` disconnects (after its body was read, a disconnect is all that comes;
    a broken connection is a client gone too)."""
    try:
        while (await request.receive()).get("type") != "http.disconnect":
            pass
    except OSError:
        return


def gone_response():
    """The answer to a request whose client went away: nobody reads it, /metrics counts it as CLIENT_GONE."""
    from fastapi.responses import JSONResponse

    return JSONResponse({"detail": "the client went away: not run"}, status_code=CLIENT_GONE)


class Strict(BaseModel):
    """A request body: a field it does not know is refused (a misspelt one was ignored: "topk" gave 20)."""

    model_config = ConfigDict(extra="forbid")


class SimilarBody(Strict):
    ids: list[StrictStr | StrictInt]
    k: int = Field(20, ge=1, le=MAX_K, strict=True)           # true was read as k=1
    explain: bool = False


class EmbedBody(Strict):
    records: list[dict]


class ReviewBody(Strict):
    a: str
    b: str
    verdict: str
    reviewer: str = "anonymous"


def too_many(what: str, count: int, limit: int) -> None:
    """HTTP 413 naming the limit and the count when a batch is over it (a request's time and memory grow
    with it)."""
    if count > limit:
        from fastapi import HTTPException

        raise HTTPException(413, f"{count} {what} in one request: at most {limit}; split the batch")


JSON_KINDS = {list: "a JSON array", str: "a JSON string", int: "a JSON number", float: "a JSON number",
              bool: "a JSON boolean", type(None): "JSON null"}


class NotInIndex(Exception):
    """An id the index lacks: answered 404 with a flat body, one `detail` line and the close ids to try."""

    def __init__(self, anchor_id: str, suggestions: Iterable[str]) -> None:
        super().__init__(f"anchor_id {anchor_id!r} is not in the index")
        self.suggestions = list(suggestions)


def body_problem(route: str, fields: list[str], content_type: str | None, raw: bytes) -> tuple[int, str] | None:
    """(status, one line) when a POST body is no JSON object sent as JSON, instead of a "Field required" per
    field; None when it is one (its fields' own errors then stand)."""
    want = f"{route} takes a JSON object ({', '.join(fields)})"
    media = (content_type or "").split(";")[0].strip().lower()
    if raw.strip() and not (media == "application/json" or media.endswith("+json")):
        # not read as JSON on purpose: another site's page may POST a form or text/plain with no CORS preflight
        sent = f"as {media}" if media else "with no Content-Type"
        return 415, f"body sent {sent}: {want}; send Content-Type: application/json (curl --json or " \
                    "-H 'Content-Type: application/json')"
    if not raw.strip():
        return 422, f"body: empty; {want}"
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as exc:
        return 422, f"body: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); {want}"
    except ValueError:                                            # bytes that are no UTF-8/16/32 text
        return 422, f"body: not valid JSON (not UTF-8 text); {want}"
    if not isinstance(body, dict):
        return 422, f"body: {JSON_KINDS.get(type(body), 'no object')}, not an object; {want}"
    return None


def body_fields(params: list) -> list[str]:
    """The fields a route's JSON body takes: a body model's own fields, or the names of its body parameters."""
    if len(params) == 1:
        model = getattr(params[0].field_info, "annotation", None)
        if isinstance(model, type) and issubclass(model, BaseModel):
            return [f.alias or name for name, f in model.model_fields.items()]
    return [f.alias for f in params]


def create_app(index: str | Path, model: str | Path | None = None, token: str | None = None,
               media_root: str | Path | None = None, review_log: str | Path | None = None, poll: float = 1.0,
               max_ids: int = MAX_IDS, max_records: int = MAX_RECORDS, max_neighbours: int = MAX_NEIGHBOURS,
               workers: int = WORKERS):
    """The FastAPI app: /similar, /embed, /healthz, /metrics, the review page at /, /media, /search, /review.

    A `model` that is no run folder or not the index's model, and a `review_log` that cannot be a file are
    refused here, with one line, not at the first request that needs them, and so is a `token` that is empty or
    holds whitespace. At most `workers` requests search or embed at once; the others wait their turn, and are
    dropped when their client goes first."""
    from fastapi import Depends, FastAPI, HTTPException, Query
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, Response
    from starlette.concurrency import run_in_threadpool

    from anchor_embed.serving.review import append_review, claim_review_log, page_html, search_streamers

    check_token(token)
    reviews = Path(review_log) if review_log else Path(index) / "reviews.jsonl"
    check_review_log(reviews)
    claim_review_log(reviews)       # marks are appended to a review log or a new file only (a run's config.json was)
    model_id = None
    if model is not None:
        from anchor_embed.model.store import model_hash
        from anchor_embed.serving.encoder import feature_settings

        feature_settings(Path(model))          # no torch yet: the model itself loads at the first /embed
        model_id = model_hash(Path(model))
    served = ServedIndex(index, poll, Path(model) if model is not None else None, model_id)
    heavy = HeavySlots(workers)
    metrics = Metrics()
    def media_now() -> Path | None:
        """--media-root, else the one the served build records (a swapped-in build may record another)."""
        return Path(media_root) if media_root else served.media_root

    if (media := media_now()) is None or not media.is_dir():
        from anchor_embed.progress import say

        what = f"no media root recorded for {index}" if media is None else f"the media root {media} is not a folder"
        say(f"[yellow]serve[/]: {what}: the review page shows no frames and /embed reads none; pass --media-root")
    encoder: dict[str, Any] = {}

    async def known_parameters(request: Request) -> None:
        """422 naming the query parameters a route that takes parameters does not know: a misspelt one was
        ignored (`?K=2&explian=1` gave 20 neighbours, unexplained)."""
        route = request.scope.get("route")
        dependant = getattr(route, "dependant", None)
        if dependant is None or not (dependant.query_params or dependant.path_params or dependant.body_params):
            return
        takes = [p.alias for p in dependant.query_params]
        unknown = [q for q in dict.fromkeys(request.query_params) if q not in takes]
        if unknown:
            raise HTTPException(422, f"unknown query parameter{'s' if len(unknown) > 1 else ''} "
                                     f"{', '.join(map(repr, unknown))}: {request.method} {route.path} takes "
                                     f"{', '.join(takes) if takes else 'none'}")

    async def in_turn(request: Request, work):
        """`work()` in a thread once a heavy slot is free; the client-gone answer (not run) when its client left
        first, and when it left while the work ran (nobody reads the answer)."""
        gone = asyncio.ensure_future(client_gone(request))
        try:
            if not await heavy.take(gone):
                return gone_response()
            try:
                out = await run_in_threadpool(work)
            finally:
                heavy.give()
            return gone_response() if gone.done() else out
        finally:
            gone.cancel()

    app = FastAPI(title="anchor-embed", version=__import__("anchor_embed").__version__,
                  description="Similar live-streamers by content vectors.", dependencies=[Depends(known_parameters)])
    app.state.served, app.state.metrics = served, metrics

    @app.middleware("http")
    async def measure_and_guard(request: Request, call_next):
        t0 = time.perf_counter()
        open_paths = ("/healthz", "/", "/docs", "/openapi.json", "/favicon.ico")
        path = request.url.path
        if token and path not in open_paths and not bearer_ok(request.headers.get("authorization"), token) \
                and not media_cookie_ok(path, request.cookies.get(MEDIA_COOKIE), token):
            response = JSONResponse({"detail": "missing or wrong bearer token"}, status_code=401)
        else:
            try:
                response = await call_next(request)
            except Exception as exc:        # answered as every error is ({"detail": one line}) and counted
                import traceback

                traceback.print_exc()
                # the project's own errors say what is wrong in a line; anything else is named, its text left to
                # the server's log (it may span lines and hold internals)
                said = " ".join(str(exc).split()) if isinstance(exc, AnchorEmbedError) else \
                    f"{type(exc).__name__}; see the server's log"
                response = JSONResponse({"detail": f"internal error: {said}"}, status_code=500)
        metrics.observe(route_label(app, request.scope), response.status_code, time.perf_counter() - t0)
        return response

    @app.exception_handler(NotInIndex)
    async def not_in_index(request: Request, exc: NotInIndex) -> Response:
        return JSONResponse({"detail": str(exc), "suggestions": exc.suggestions}, status_code=404)

    @app.exception_handler(RequestValidationError)
    async def body_errors(request: Request, exc: RequestValidationError) -> Response:
        """A body that is no JSON object (an array, form encoding, bad JSON) gets one line, not one per field."""
        route = request.scope.get("route")
        fields = body_fields(getattr(getattr(route, "dependant", None), "body_params", []))
        if fields and any(e.get("loc", ())[:1] == ("body",) for e in exc.errors()):
            found = body_problem(f"{request.method} {route.path}", fields, request.headers.get("content-type"),
                                 await request.body())            # the body the route read, cached on the request
            if found is not None:
                return JSONResponse({"detail": found[1]}, status_code=found[0])
        # every error {"detail": "one line"}, as the page and a client read them ("k: Input should be ...")
        said = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'request'}: "
                         + (f"unknown field ({request.method} {route.path} takes {', '.join(fields)})"
                            if e.get("type") == "extra_forbidden" and route is not None else e.get("msg", ""))
                         for e in exc.errors())
        return JSONResponse({"detail": said or "invalid request"}, status_code=422)

    @app.get("/healthz")
    @app.head("/healthz", include_in_schema=False)       # load balancers' probes (was 405)
    def healthz() -> dict:
        look = served.lookup
        return {"status": "ok", "vectors": look.index.ntotal, "model_hash": look.meta.get("model_hash"),
                "swaps": served.swaps}

    @app.get("/metrics", response_class=PlainTextResponse)
    def prometheus() -> str:
        return metrics.render(served)

    @app.get("/similar/{anchor_id}")
    async def similar_one(request: Request, anchor_id: str, k: int = Query(20, ge=1, le=MAX_K), explain: bool = False):
        too_much_work(1, k, max_neighbours)

        def work() -> dict:
            look = served.lookup
            answer = look.similar([anchor_id], k, explain=explain and look.modalities is not None)[0]
            if not answer.found:
                raise NotInIndex(anchor_id, answer.suggestions)
            return answer.to_dict()
        return await in_turn(request, work)

    @app.post("/similar")
    async def similar_many(request: Request, body: SimilarBody):
        too_many("ids", len(body.ids), max_ids)
        too_much_work(len(body.ids), body.k, max_neighbours)

        def work() -> dict:
            look = served.lookup
            explain = body.explain and look.modalities is not None
            return {"results": [a.to_dict() for a in look.similar(body.ids, body.k, explain=explain)]}
        return await in_turn(request, work)

    @app.post("/embed")
    async def embed_records(request: Request, body: EmbedBody):
        records = body.records
        if model is None:
            raise HTTPException(404, "no --model given to this server: /embed is off")
        too_many("records", len(records), max_records)

        def work() -> dict:
            if "model" not in encoder:
                from anchor_embed.model.store import model_hash
                from anchor_embed.serving.encoder import Model

                if "refused" not in encoder:     # the folder may have been retrained or replaced since start-up
                    now = model_hash(Path(model))
                    if now != model_id:
                        encoder["refused"] = (f"--model {model} holds other weights ({now}) than when the server "
                                              f"started ({model_id}), which made the index's vectors: restart the "
                                              "server with the run that made the index")
                if "refused" in encoder:        # said once, not hashed and loaded again for every request
                    raise HTTPException(409, encoder["refused"])
                encoder["model"] = Model(model)
            try:
                vecs = encoder["model"].encode(records, media_root=media_now())
            except AnchorEmbedError as exc:
                raise HTTPException(422, str(exc)) from None
            # the ids as records read them (an integer id is its decimal), not as sent; beside them each frame not
            # read and each meta field the model reads as a tag that a record lacks
            return {"anchor_ids": as_ids([r.get("anchor_id") for r in records]), "vectors": vecs.round(6).tolist(),
                    "warnings": frame_warnings(records, media_now() or Path.cwd())
                    + meta_warnings(records, encoder["model"].feature_meta.get("meta_tags"))}
        return await in_turn(request, work)

    @app.get("/search")
    def search(q: str = Query(..., min_length=1), limit: int = Query(10, ge=1, le=50)) -> dict:
        return {"matches": search_streamers(served.lookup, q, limit)}

    @app.get("/streamer/{anchor_id:path}")          # an id may hold "/" (team%2Falpha): the page asks by path
    def streamer(anchor_id: str) -> dict:
        look = served.lookup
        if look.keys.row(anchor_id) is None:
            raise NotInIndex(anchor_id, look.keys.close_to(anchor_id))
        return {"anchor_id": anchor_id, **look.label(anchor_id)}

    @app.get("/media/{path:path}")
    def media_file(path: str, anchor_id: str | None = None):
        """A frame the indexed streamer `anchor_id` lists (the review page's <img>), nothing else under the root."""
        root = media_now()
        f = listed_frame(served.lookup, anchor_id, path, root) if root else None
        if f is None:
            raise HTTPException(404, "no such frame: /media/PATH?anchor_id=ID serves the frames the indexed "
                                     "streamer ID lists, from under the media root")
        return FileResponse(f)

    @app.post("/review")
    def review(body: ReviewBody):
        try:
            return append_review(reviews, body.a, body.b, body.verdict, body.reviewer, served.lookup)
        except AnchorEmbedError as exc:
            raise HTTPException(422, str(exc)) from None

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return page_html()

    return app


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (as uvicorn binds one), or one line why not: a busy port was found only after
    the server had announced itself, by uvicorn's "[Errno 98]" and exit code 3."""
    import errno

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise AnchorEmbedError(f"port {port} on {host} is in use (another server?): give another --port") from None
        raise AnchorEmbedError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def limit_threads(threads: int) -> None:
    """Cap the threads one request's faiss, BLAS and torch work uses, so the `workers` requests running at once
    fill the cores instead of oversubscribing them (12 parallel lookups once took 3.5x their serial time).
    Set before faiss and torch load, which read the variables then (OpenMP's default for every thread; a call
    to faiss.omp_set_num_threads would set it for the calling thread only); a value set by the user stands."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))


def serve(index: str | Path, model: str | Path | None = None, host: str = "127.0.0.1", port: int = 8000,
          token: str | None = None, media_root: str | Path | None = None, review_log: str | Path | None = None,
          max_ids: int = MAX_IDS, max_records: int = MAX_RECORDS, max_neighbours: int = MAX_NEIGHBOURS,
          workers: int = WORKERS) -> None:
    """Run the server (uvicorn) until interrupted; loopback unless another --host is given. The port is bound
    before the server says it serves, so a busy one is one line and exit code 2."""
    import uvicorn

    from anchor_embed.progress import say

    limit_threads(max(1, cores() // workers))             # before create_app loads faiss
    app = create_app(index, model, token, media_root, review_log, max_ids=max_ids, max_records=max_records,
                     max_neighbours=max_neighbours, workers=workers)
    sock = listen(host, port)
    say(f"[bold]serve[/]: {app.state.served.lookup.index.ntotal} vectors from {index} on http://{host}:{port} "
        f"(docs at /docs, review page at /){'; bearer token required' if token else ''}")
    try:
        uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning")).run(sockets=[sock])
    finally:
        sock.close()
