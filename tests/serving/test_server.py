"""The HTTP server as clients meet it: lookups, batches, embed, metrics, the token, media confinement,
reviews, and an index swap under load with no request dropped."""

import json
import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from anchor_embed.serving.server import create_app


@pytest.fixture()
def client(sample_index, pretrained, tmp_path):
    app = create_app(sample_index / "idx", model=pretrained, review_log=tmp_path / "reviews.jsonl", poll=0)
    with TestClient(app) as c:
        yield c


@pytest.mark.slow
def test_lookups_batches_and_metrics(client, sample_index):
    assert client.get("/healthz").json()["vectors"] == 75
    one = client.get("/similar/s0000", params={"k": 5, "explain": True}).json()
    assert one["anchor_id"] == "s0000" and len(one["neighbours"]) == 5 and "explain" in one["neighbours"][0]
    missing = client.get("/similar/S0000")
    assert missing.status_code == 404 and missing.json()["suggestions"][0] == "s0000"
    batch = client.post("/similar", json={"ids": ["s0001", "nope", "s0002"], "k": 3}).json()["results"]
    assert [r["anchor_id"] for r in batch] == ["s0001", "nope", "s0002"]
    assert batch[1]["found"] is False and len(batch[0]["neighbours"]) == 3 == len(batch[2]["neighbours"])
    assert client.get("/similar/s0000", params={"k": 0}).status_code == 422
    text = client.get("/metrics").text
    assert 'anchor_embed_requests_total{route="/similar/{anchor_id}",status="200"} 1' in text
    assert "anchor_embed_request_seconds_bucket" in text and "anchor_embed_index_vectors 75" in text
    assert client.get("/docs").status_code == 200 and "/similar" in client.get("/openapi.json").text


def test_the_readme_names_the_routes_the_server_has(sample_index, tmp_path):
    """Every `METHOD /path` the README's serve row names is a route of the app (it once named a
    `GET /similar?id=` that answered 405)."""
    import re
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| `anchor-embed serve"))
    named = set(re.findall(r"`(GET|POST) (/[^`?\s]*)", row))
    assert {("GET", "/similar/{anchor_id}"), ("POST", "/similar"), ("POST", "/embed")} <= named
    app = create_app(sample_index / "idx", review_log=tmp_path / "reviews.jsonl", poll=0)
    routes = {(m, r.path) for r in app.routes for m in getattr(r, "methods", ()) or ()}
    assert named <= routes, named - routes


@pytest.mark.slow
def test_embed_matches_the_indexed_vectors(client, sample_index, sample):
    rows = [json.loads(x) for x in (sample / "streamers.jsonl").read_text().splitlines()[:3]]
    got = np.array(client.post("/embed", json={"records": rows}).json()["vectors"], np.float32)
    keys = (sample_index / "vec" / "keys.txt").read_text().split()
    want = np.load(sample_index / "vec" / "vectors.npy")[[keys.index(r["anchor_id"]) for r in rows]]
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert client.post("/embed", json={"records": [{"nickname": "no id"}]}).status_code == 422


def test_token_media_and_reviews(sample_index, sample, tmp_path):
    log = tmp_path / "r.jsonl"
    app = create_app(sample_index / "idx", token="s3cret", media_root=sample, review_log=log, poll=0)
    with TestClient(app) as c:
        assert c.get("/healthz").status_code == 200 and c.get("/").status_code == 200   # open
        assert c.head("/healthz").status_code == 200                      # a load balancer's probe (was 405)
        assert c.get("/similar/s0000").status_code == 401
        auth = {"Authorization": "Bearer s3cret"}
        assert c.get("/similar/s0000", headers=auth).status_code == 200
        frame = json.loads((sample / "streamers.jsonl").read_text().splitlines()[0])["frames"][0]
        assert c.get(f"/media/{frame}?anchor_id=s0000", headers=auth).content[:4] == b"\x89PNG"
        for bad in ("../streamers.jsonl", "%2Fetc%2Fpasswd", "..%2F..%2Fetc%2Fpasswd"):
            assert c.get(f"/media/{bad}?anchor_id=s0000", headers=auth).status_code == 404, bad
        r = c.post("/review", json={"a": "s0000", "b": "dup00", "verdict": "same_owner", "reviewer": "ana"},
                   headers=auth)
        assert r.status_code == 200
        assert c.post("/review", json={"a": "s0000", "b": "zzz", "verdict": "same_owner"}, headers=auth).status_code == 422
        assert c.post("/review", json={"a": "s0000", "b": "s0001", "verdict": "maybe"}, headers=auth).status_code == 422
        names = c.get("/search", params={"q": "GAM_"}, headers=auth).json()["matches"]
        assert names and all(m["nickname"].lower().startswith("gam_") for m in names)
        assert c.get("/search", params={"q": " "}, headers=auth).json()["matches"] == []   # was 10 arbitrary ones
    line = json.loads(log.read_text())
    assert (line["a"], line["b"], line["verdict"], line["reviewer"]) == ("s0000", "dup00", "same_owner", "ana")


@pytest.mark.slow
def test_a_new_build_is_swapped_in_without_dropping_requests(sample_index, tmp_path):
    import shutil

    from anchor_embed.serving.index import build_index

    idx = tmp_path / "idx"
    shutil.copytree(sample_index / "idx", idx)
    app = create_app(idx, poll=0.05)
    errors, answered, stop = [], [0], threading.Event()

    def wait_for(done, seconds: float = 120.0) -> None:
        """Until `done()` holds (a busy machine answers slowly: wait on events, never a fixed count of them)."""
        deadline = time.monotonic() + seconds
        while not done() and time.monotonic() < deadline:
            time.sleep(0.02)

    with TestClient(app) as c:
        def hammer():
            while not stop.is_set():
                r = c.get("/similar/s0003", params={"k": 5})
                if r.status_code != 200:
                    errors.append(r.status_code)
                answered[0] += 1
        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for t in threads:
            t.start()
        wait_for(lambda: answered[0] >= 5)                                 # requests in flight before the build
        build_index(sample_index / "vec", idx, kind="hnsw")                 # a new build into the served folder
        wait_for(lambda: app.state.served.swaps > 0)
        after = answered[0]
        wait_for(lambda: answered[0] >= after + 5)                         # and after the swap
        stop.set()
        for t in threads:
            t.join()
        assert app.state.served.swaps == 1 and app.state.served.lookup.meta["kind"] == "hnsw"
        assert c.get("/similar/s0003", params={"k": 5}).status_code == 200
    assert not errors and after >= 5 and answered[0] >= after + 5


@pytest.mark.slow
def test_batches_over_the_limit_are_refused_with_413(client, sample_index, tmp_path):
    """20,000 ids at k=1000 once ran for minutes in 6 GB: a batch over the limit is refused at once, naming the
    limit and the count; one at the limit is answered."""
    from anchor_embed.serving.server import MAX_IDS, MAX_RECORDS

    over = client.post("/similar", json={"ids": ["s0000"] * (MAX_IDS + 1), "k": 1})
    assert over.status_code == 413
    assert over.json()["detail"] == f"{MAX_IDS + 1} ids in one request: at most {MAX_IDS}; split the batch"
    full = client.post("/similar", json={"ids": ["s0001"] * MAX_IDS, "k": 1})
    assert full.status_code == 200 and len(full.json()["results"]) == MAX_IDS
    records = [{"anchor_id": f"x{i}"} for i in range(MAX_RECORDS + 1)]
    over = client.post("/embed", json={"records": records})
    assert over.status_code == 413
    assert over.json()["detail"] == f"{MAX_RECORDS + 1} records in one request: at most {MAX_RECORDS}; split the batch"
    app = create_app(sample_index / "idx", review_log=tmp_path / "r.jsonl", poll=0, max_ids=2)
    with TestClient(app) as c:
        assert c.post("/similar", json={"ids": ["s0000", "s0001"]}).status_code == 200
        assert "at most 2" in c.post("/similar", json={"ids": ["s0000"] * 3}).json()["detail"]


@pytest.mark.slow
def test_startup_refuses_a_folder_that_is_no_model_and_a_review_log_that_is_no_file(sample_index, tmp_path):
    """Both were found only by the first request, which got HTTP 500 and a traceback in the log."""
    import subprocess
    import sys

    from anchor_embed.errors import AnchorEmbedError

    idx = sample_index / "idx"
    with pytest.raises(AnchorEmbedError, match=f"^{tmp_path}: no model here"):
        create_app(idx, model=tmp_path, review_log=tmp_path / "r.jsonl", poll=0)
    with pytest.raises(AnchorEmbedError, match=f"^review log {tmp_path}: is a folder"):
        create_app(idx, review_log=tmp_path, poll=0)
    (tmp_path / "plain").write_text("x")
    with pytest.raises(AnchorEmbedError, match="plain is a file, not a folder"):
        create_app(idx, review_log=tmp_path / "plain" / "r.jsonl", poll=0)
    config = tmp_path / "config.json"                       # marks were appended to any file (a run's config)
    config.write_text('{"epochs": 3}\n')
    with pytest.raises(AnchorEmbedError, match=f"^review log {config}: line 1: not a review line"):
        create_app(idx, review_log=config, poll=0)
    assert config.read_text() == '{"epochs": 3}\n'
    cmd = [sys.executable, "-m", "anchor_embed.cli", "serve", "--index", str(idx), "--model", str(tmp_path),
           "--port", "8799"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)   # the old code served until killed
    assert p.returncode == 2 and p.stderr.strip() == f"error: {tmp_path}: no model here (expected " \
                                                     "model_config.json and model.safetensors)"


@pytest.mark.slow
def test_embed_errors_keep_the_reason_and_name_the_records(client):
    """A bad record is answered with pydantic's message and its field; a batch with nothing to encode names
    its records, not a temporary file of the server."""
    import tempfile

    missing = client.post("/embed", json={"records": [{"nickname": "no id"}]})
    assert missing.status_code == 422 and missing.json()["detail"] == "records[0].anchor_id: Field required"
    wrong = client.post("/embed", json={"records": [{"anchor_id": "a", "nickname": "A"},
                                                    {"anchor_id": "b", "tags": "not a list"}]}).json()["detail"]
    assert wrong.startswith("records[1].tags: ") and "list" in wrong and "errors.pydantic.dev" not in wrong
    empty = client.post("/embed", json={"records": [{"anchor_id": "a"}, {"anchor_id": "b", "tags": []}]})
    detail = empty.json()["detail"]
    assert empty.status_code == 422 and detail.startswith("records 'a', 'b': no text or tags to encode")
    assert tempfile.gettempdir() not in detail and "records.jsonl" not in detail


@pytest.fixture()
def lookup_client(sample_index, tmp_path):
    """A server with no --model (lookups and reviews), its review log in tmp_path."""
    app = create_app(sample_index / "idx", review_log=tmp_path / "reviews.jsonl", poll=0)
    with TestClient(app) as c:
        yield c


def test_an_unknown_id_is_answered_with_a_flat_body(lookup_client):
    """It once nested the body, {"detail": {"detail": ..., "suggestions": [...]}}: now `detail` is one line
    naming the id, beside the close ids to try, for a lookup and for a streamer's page alike."""
    for path in ("/similar/S0000", "/streamer/S0000"):
        r = lookup_client.get(path)
        body = r.json()
        assert r.status_code == 404 and set(body) == {"detail", "suggestions"}, (path, body)
        assert body["detail"] == "anchor_id 'S0000' is not in the index" and body["suggestions"][0] == "s0000"


def test_a_body_that_is_no_json_object_is_refused_with_one_line(lookup_client):
    """An array (or any non-object) once got a "Field required" for every field, even `k` and `explain` which
    have defaults; now one line says what the body was and what the route takes."""
    want = "POST /similar takes a JSON object (ids, k, explain)"
    for body, kind in ((b'["s0000"]', "a JSON array"), (b'"s0000"', "a JSON string"), (b"3", "a JSON number"),
                       (b"null", "JSON null")):
        r = lookup_client.post("/similar", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 422 and r.json() == {"detail": f"body: {kind}, not an object; {want}"}, body
    r = lookup_client.post("/similar", content=b'{"ids": [', headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    assert r.json()["detail"] == f"body: not valid JSON (Expecting value at line 1 column 10); {want}"
    r = lookup_client.post("/review", json=[["s0000", "dup00", "same_owner"]])
    assert r.json()["detail"] == "body: a JSON array, not an object; POST /review takes a JSON object " \
                                 "(a, b, verdict, reviewer)"
    assert lookup_client.post("/similar").json()["detail"] == f"body: empty; {want}"
    fields = lookup_client.post("/similar", json={"ids": "s0000", "k": 0})        # an object: its fields' errors
    assert fields.status_code == 422 and fields.json()["detail"] == \
        "ids: Input should be a valid list; k: Input should be greater than or equal to 1"


def test_a_body_not_sent_as_json_is_refused_with_one_line(lookup_client, tmp_path):
    """`curl -d '{"ids": ["a"]}'` sends form encoding and was told `ids` is missing; now one line says to send
    Content-Type: application/json. Such a body is not read as JSON: a form or text/plain POST from another
    site's page needs no CORS preflight, and must not append marks to the review log."""
    for headers, sent in (({"Content-Type": "application/x-www-form-urlencoded"}, "as application/x-www-form-urlencoded"),
                          ({"Content-Type": "text/plain; charset=utf-8"}, "as text/plain"), ({}, "with no Content-Type")):
        r = lookup_client.post("/similar", content=b'{"ids": ["s0000"]}', headers=headers)
        assert r.status_code == 415 and r.json() == {
            "detail": f"body sent {sent}: POST /similar takes a JSON object (ids, k, explain); send Content-Type: "
                      "application/json (curl --json or -H 'Content-Type: application/json')"}, headers
    mark = json.dumps({"a": "s0000", "b": "dup00", "verdict": "same_owner"})
    assert lookup_client.post("/review", content=mark, headers={"Content-Type": "text/plain"}).status_code == 415
    assert not (tmp_path / "reviews.jsonl").exists()
    ok = lookup_client.post("/similar", content=b'{"ids": ["s0000"]}',
                            headers={"Content-Type": "application/json; charset=utf-8"})
    assert ok.status_code == 200 and ok.json()["results"][0]["neighbours"]


def test_field_errors_are_one_line_and_integer_ids_read_as_records_read_them(client):
    """A bad k was FastAPI's list of error objects, the one error shape left; /similar refused the integer id
    /embed took, and /embed echoed it as sent (5, not '5')."""
    r = client.get("/similar/s0000", params={"k": 0})
    assert r.status_code == 422 and r.json() == {"detail": "k: Input should be greater than or equal to 1"}
    r = client.post("/similar", json={"ids": ["s0000"], "k": "many"})
    assert r.status_code == 422 and r.json()["detail"].startswith("k: Input should be a valid integer")
    assert client.post("/similar", json={"ids": [5], "k": 1}).json()["results"][0]["anchor_id"] == "5"
    got = client.post("/embed", json={"records": [{"anchor_id": 5, "nickname": "a streamer"}]}).json()
    assert got["anchor_ids"] == ["5"]


def _other_model(pretrained, tmp_path):
    """A copy of the shared run with its weights nudged: another model hash, no training."""
    import shutil

    from safetensors.numpy import load_file, save_file

    run = tmp_path / "other-run"
    shutil.copytree(pretrained, run, ignore=shutil.ignore_patterns("checkpoints"))
    weights = load_file(str(run / "model.safetensors"))
    name = next(iter(weights))
    weights[name] = weights[name] + 0.5
    save_file(weights, str(run / "model.safetensors"))
    return run


def test_a_model_that_did_not_make_the_index_is_refused(sample_index, pretrained, tmp_path):
    """`serve --model B` over an index of model A answered /embed with B's vectors, incomparable with the
    index's; now start-up refuses it naming both, and a later build of another model is not swapped in."""
    import shutil

    from anchor_embed.errors import AnchorEmbedError
    from anchor_embed.model.store import model_hash

    other = _other_model(pretrained, tmp_path)
    idx = sample_index / "idx"
    have = json.loads((idx / "meta.json").read_text())["model_hash"]
    assert model_hash(other) != have
    with pytest.raises(AnchorEmbedError, match=f"^index {idx} holds vectors of model {have} .*not of --model "
                                              f"{other} \\({model_hash(other)}\\)"):
        create_app(idx, model=other, review_log=tmp_path / "r.jsonl", poll=0)
    copy = tmp_path / "idx"
    shutil.copytree(idx, copy)
    app = create_app(copy, model=pretrained, review_log=tmp_path / "r.jsonl", poll=0)
    meta = json.loads((copy / "meta.json").read_text())
    (copy / "meta.json").write_text(json.dumps({**meta, "model_hash": model_hash(other), "note": "rebuilt"}))
    assert app.state.served.refresh() is False and app.state.served.swaps == 0
    assert app.state.served.lookup.meta["model_hash"] == have


def test_unmatched_paths_share_one_metrics_label(sample_index, tmp_path):
    """GET /random_1 ... /random_30 made 30 series in /metrics; a path no route has is now counted as
    route="unmatched", and a request refused for its token keeps its route's template."""
    app = create_app(sample_index / "idx", token="s3cret", review_log=tmp_path / "r.jsonl", poll=0)
    auth = {"Authorization": "Bearer s3cret"}
    with TestClient(app) as c:
        for i in range(30):
            assert c.get(f"/random_{i}", headers=auth).status_code == 404
        assert c.get("/similar/s0000").status_code == 401
        text = c.get("/metrics", headers=auth).text
    assert 'anchor_embed_requests_total{route="unmatched",status="404"} 30' in text
    assert 'anchor_embed_requests_total{route="/similar/{anchor_id}",status="401"} 1' in text
    assert "random_" not in text


def test_the_bearer_scheme_is_read_in_any_case(sample_index, tmp_path):
    """`Authorization: bearer s3cret` was refused with 401; the scheme is case-insensitive (RFC 7235)."""
    app = create_app(sample_index / "idx", token="s3cret", review_log=tmp_path / "r.jsonl", poll=0)
    with TestClient(app) as c:
        for header in ("Bearer s3cret", "bearer s3cret", "BEARER s3cret", "bEaReR  s3cret"):
            assert c.get("/similar/s0000", headers={"Authorization": header}).status_code == 200, header
        for header in ("Basic s3cret", "Bearer S3CRET", "Bearer", "Bearers3cret", "Bearer s3cret extra", "s3cret"):
            assert c.get("/similar/s0000", headers={"Authorization": header}).status_code == 401, header


@pytest.mark.slow
def test_startup_refuses_a_busy_port_and_another_model_with_one_line(sample_index, pretrained, tmp_path):
    """A busy port printed the "serve: ... on http://..." announcement, then uvicorn's "[Errno 98]" and exit
    code 3; another model than the index's served. Both are now one line and exit code 2, before any
    announcement."""
    import socket
    import subprocess
    import sys

    idx = sample_index / "idx"
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        cmd = [sys.executable, "-m", "anchor_embed.cli", "serve", "--index", str(idx), "--port", str(port)]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    finally:
        busy.close()
    assert p.returncode == 2 and "serve:" not in p.stderr + p.stdout
    assert p.stderr.strip() == f"error: port {port} on 127.0.0.1 is in use (another server?): give another --port"
    other = _other_model(pretrained, tmp_path)
    cmd = [sys.executable, "-m", "anchor_embed.cli", "serve", "--index", str(idx), "--model", str(other),
           "--port", str(port)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    have = json.loads((idx / "meta.json").read_text())["model_hash"]
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
    assert p.stderr.startswith(f"error: index {idx} holds vectors of model {have}") and str(other) in p.stderr


def test_the_work_of_one_lookup_is_capped(sample_index, tmp_path):
    """1000 ids at k=1000 with explain made a 200 MB answer in 157 s: ids x k over --max-neighbours is refused
    with 413, naming the limit and the product; at the limit it is answered."""
    from anchor_embed.serving.server import MAX_NEIGHBOURS

    app = create_app(sample_index / "idx", review_log=tmp_path / "r.jsonl", poll=0)
    with TestClient(app) as c:
        over = c.post("/similar", json={"ids": ["s0000"] * 100, "k": 1000, "explain": True})
        assert over.status_code == 413 and over.json()["detail"] == (
            f"100 ids x k 1000 = 100,000 neighbours in one request: at most {MAX_NEIGHBOURS:,} (--max-neighbours); "
            "lower k or split the batch")
    app = create_app(sample_index / "idx", review_log=tmp_path / "r.jsonl", poll=0, max_neighbours=10)
    with TestClient(app) as c:
        assert c.post("/similar", json={"ids": ["s0000", "s0001"], "k": 5}).status_code == 200
        assert c.post("/similar", json={"ids": ["s0000", "s0001"], "k": 6}).status_code == 413
        assert c.get("/similar/s0000", params={"k": 10}).status_code == 200
        assert "= 11 neighbours" in c.get("/similar/s0000", params={"k": 11}).json()["detail"]


def _most_at_once(app, requests: int = 16) -> int:
    """The most lookups inside the index's search at once while `requests` clients post in parallel."""
    from concurrent.futures import ThreadPoolExecutor

    look = app.state.served.lookup
    inside, most, guard, real = [0], [0], threading.Lock(), look.similar

    def counted(*args, **kwargs):
        with guard:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        try:
            time.sleep(0.05)                            # long enough for the other requests to pile up
            return real(*args, **kwargs)
        finally:
            with guard:
                inside[0] -= 1

    look.similar = counted
    with TestClient(app) as c, ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda i: c.post("/similar", json={"ids": [f"s{i:04d}"], "k": 5}).status_code,
                              range(requests)))
    assert codes == [200] * requests
    return most[0]


def test_heavy_work_runs_for_at_most_workers_requests_at_once(sample_index, tmp_path):
    """12 heavy lookups in parallel took 3.5x their serial time (threads oversubscribing 2 cores and fighting
    over the GIL): at most `workers` requests (default 1) now search at once, the others wait their turn."""
    assert _most_at_once(create_app(sample_index / "idx", review_log=tmp_path / "r.jsonl", poll=0)) == 1
    two = create_app(sample_index / "idx", review_log=tmp_path / "r.jsonl", poll=0, workers=2)
    assert 1 <= _most_at_once(two) <= 2


@pytest.mark.slow
def test_embed_names_the_frames_it_did_not_read(client, sample):
    """A frame outside the media root or missing was dropped with a 200 and a vector, said only in the server
    log; the answer now lists each one with its record's id."""
    row = json.loads((sample / "streamers.jsonl").read_text().splitlines()[0])
    good = row["frames"][0]
    records = [{"anchor_id": "a", "nickname": "A", "frames": [good, "../outside.png", "no/such.png"]},
               {"anchor_id": 7, "nickname": "B", "frames": [good]}]
    r = client.post("/embed", json={"records": records})
    assert r.status_code == 200 and len(r.json()["vectors"]) == 2
    assert r.json()["warnings"] == [
        {"anchor_id": "a", "frame": "../outside.png", "problem": "outside the media root: not read"},
        {"anchor_id": "a", "frame": "no/such.png", "problem": "not found under the media root"}]
    clean = client.post("/embed", json={"records": [{"anchor_id": "c", "nickname": "C", "frames": [good]}]})
    assert clean.json()["warnings"] == []


def test_an_unexpected_error_is_a_json_line_counted_in_metrics(sample_index, tmp_path):
    """An error no route expects (here labels.jsonl cut in place under the server) was a plain-text 500 that
    /metrics never counted (it skipped the counting middleware)."""
    import shutil

    idx = tmp_path / "idx"
    shutil.copytree(sample_index / "idx", idx)
    app = create_app(idx, review_log=tmp_path / "r.jsonl", poll=0)
    with TestClient(app, raise_server_exceptions=False) as c:
        assert c.get("/streamer/s0000").status_code == 200
        with open(idx / "labels.jsonl", "r+b") as f:     # in place: the server's open file sees it
            f.truncate(10)
        r = c.get("/streamer/s0000")
        assert r.status_code == 500 and "labels.jsonl: unreadable at 's0000'" in r.json()["detail"]
        assert 'anchor_embed_requests_total{route="/streamer/{anchor_id:path}",status="500"} 1' in c.get("/metrics").text


def test_the_review_pages_frames_pass_the_token_by_cookie(sample_index, sample, tmp_path):
    """An <img> sends no Authorization header: with --token every frame of the review page was a 401 (and
    removed by the page). The page sets the token as a cookie for /media only; other routes still need the header."""
    from urllib.parse import quote

    app = create_app(sample_index / "idx", token="s3;cret/=", media_root=sample, review_log=tmp_path / "r.jsonl",
                     poll=0)
    frame = json.loads((sample / "streamers.jsonl").read_text().splitlines()[0])["frames"][0] + "?anchor_id=s0000"
    assert "anchor_embed_token=" in client_page(app)
    with TestClient(app) as c:
        assert c.get(f"/media/{frame}").status_code == 401
        c.cookies.set("anchor_embed_token", quote("s3;cret/=", safe=""))    # as the page's encodeURIComponent
        assert c.get(f"/media/{frame}").content[:4] == b"\x89PNG"
        assert c.get("/similar/s0000").status_code == 401                   # the cookie opens frames only
        c.cookies.set("anchor_embed_token", "wrong")
        assert c.get(f"/media/{frame}").status_code == 401


def client_page(app) -> str:
    with TestClient(app) as c:
        return c.get("/").text


def test_the_media_root_outlives_the_vectors_folder(sample_index, sample, pretrained, tmp_path):
    """The server found the frames through the vectors folder the index was built from: once that was moved or
    removed, every frame was a 404 without a word. The build records the media root in the index."""
    import shutil

    from anchor_embed.serving.index import build_index

    shutil.copytree(sample_index / "vec", tmp_path / "vec")
    meta = build_index(tmp_path / "vec", tmp_path / "idx")
    assert meta["media_root"] == json.loads((tmp_path / "vec" / "fingerprint.json").read_text())["media_root"]
    shutil.rmtree(tmp_path / "vec")
    frame = json.loads((sample / "streamers.jsonl").read_text().splitlines()[0])["frames"][0]
    app = create_app(tmp_path / "idx", review_log=tmp_path / "r.jsonl", poll=0)
    with TestClient(app) as c:
        assert c.get(f"/media/{frame}?anchor_id=s0000").content[:4] == b"\x89PNG"
        # a build swapped in that records another media root is served from it (the start-up one was kept)
        other = tmp_path / "media2"
        (other / frame).parent.mkdir(parents=True)
        (other / frame).write_bytes(b"\x89PNG other")
        shutil.copytree(sample_index / "vec", tmp_path / "vec2")
        made = json.loads((tmp_path / "vec2" / "fingerprint.json").read_text())
        (tmp_path / "vec2" / "fingerprint.json").write_text(json.dumps({**made, "media_root": str(other)}))
        build_index(tmp_path / "vec2", tmp_path / "idx")
        assert app.state.served.refresh()
        assert c.get(f"/media/{frame}?anchor_id=s0000").content == b"\x89PNG other"


@pytest.mark.slow
def test_a_model_replaced_after_start_up_is_refused_at_the_first_embed(sample_index, pretrained, tmp_path):
    """The model was checked against the index at start-up and loaded at the first /embed from whatever the
    folder then held: a run retrained in place answered with vectors incomparable with the index's."""
    import shutil

    from safetensors.torch import load_file, save_file

    run = tmp_path / "run"
    shutil.copytree(pretrained, run)
    app = create_app(sample_index / "idx", model=run, review_log=tmp_path / "r.jsonl", poll=0)
    weights = load_file(str(run / "model.safetensors"))
    save_file({k: v + 0.01 if v.is_floating_point() else v for k, v in weights.items()}, str(run / "model.safetensors"))
    with TestClient(app) as c:
        for _ in range(2):          # refused again at once, not hashed and loaded per request
            r = c.post("/embed", json={"records": [{"anchor_id": "x", "nickname": "a streamer"}]})
            assert r.status_code == 409 and "holds other weights" in r.json()["detail"]


def test_media_serves_only_frames_an_indexed_streamer_lists(sample_index, sample, tmp_path):
    """/media served any file under the media root: the dataset's interaction log, ID embeddings and records.
    Now only a frame that the streamer named by `anchor_id` lists in the index (as the review page shows it)."""
    app = create_app(sample_index / "idx", token="t", media_root=sample, review_log=tmp_path / "r.jsonl", poll=0)
    frames = [json.loads(x)["frames"] for x in (sample / "streamers.jsonl").read_text().splitlines()[:2]]
    auth = {"Authorization": "Bearer t"}
    with TestClient(app) as c:
        assert c.get(f"/media/{frames[0][0]}", params={"anchor_id": "s0000"}, headers=auth).content[:4] == b"\x89PNG"
        for name in ("interactions.csv", "ids.npy", "ids.keys.txt", "streamers.jsonl"):
            assert (sample / name).is_file()
            for params in ({}, {"anchor_id": "s0000"}):
                assert c.get(f"/media/{name}", params=params, headers=auth).status_code == 404, (name, params)
        assert c.get(f"/media/{frames[0][0]}", headers=auth).status_code == 404                  # whose frame?
        assert c.get(f"/media/{frames[1][0]}", params={"anchor_id": "s0000"}, headers=auth).status_code == 404
        assert c.get(f"/media/{frames[0][0]}", params={"anchor_id": "nobody"}, headers=auth).status_code == 404


def _serve_in_thread(app):
    """A real uvicorn server for `app` on a free port, in a thread: (server, thread, port)."""
    import socket

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    return server, thread, port


def test_a_request_whose_client_left_before_its_turn_is_not_run(sample_index, tmp_path):
    """Clients that gave up (curl -m 1) still had their queued lookups run one after another, counted 200: a
    lookup behind them waited 13 s, and a SIGTERM 15 s. Now a waiting request whose client has gone is dropped
    before it takes the slot and counted as status 499; one whose client left while it ran is counted 499 too."""
    import http.client
    import socket

    app = create_app(sample_index / "idx", review_log=tmp_path / "r.jsonl", poll=0)
    look = app.state.served.lookup
    real, ran, inside, release = look.similar, [], threading.Event(), threading.Event()

    def slow(ids, *args, **kwargs):
        ran.append(list(ids))
        if ids == ["s0000"]:                        # the request holding the slot, until the test lets it go
            inside.set()
            release.wait(60)
        return real(ids, *args, **kwargs)

    look.similar = slow
    server, thread, port = _serve_in_thread(app)
    try:
        def ask(ids: list[str]) -> int:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request("POST", "/similar", json.dumps({"ids": ids, "k": 1}), {"Content-Type": "application/json"})
            status = conn.getresponse().status
            conn.close()
            return status
        first: list[int] = []
        holder = threading.Thread(target=lambda: first.append(ask(["s0000"])))
        holder.start()
        assert inside.wait(60)
        body = json.dumps({"ids": ["s0001"], "k": 1}).encode()
        gone = []
        for _ in range(3):                          # clients that send a lookup and give up while it waits
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"POST /similar HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            gone.append(s)
        time.sleep(1.0)                             # read and queued behind the holder
        for s in gone:
            s.close()

        def counted(status: int) -> int:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request("GET", "/metrics")
            text = conn.getresponse().read().decode()
            conn.close()
            line = f'anchor_embed_requests_total{{route="/similar",status="{status}"}} '
            return next((int(x[len(line):]) for x in text.splitlines() if x.startswith(line)), 0)
        deadline = time.monotonic() + 30
        while counted(499) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert counted(499) == 3 and ran == [["s0000"]]         # dropped while the slot was still held
        release.set()
        holder.join(60)
        assert first == [200] and ask(["s0002"]) == 200
        assert ran == [["s0000"], ["s0002"]] and counted(200) == 2
    finally:
        release.set()
        server.should_exit = True
        thread.join(timeout=30)


@pytest.mark.slow
def test_embed_names_the_meta_fields_the_model_reads_that_a_record_lacks(sample_index, pretrained, tmp_path):
    """A record without `meta` (or without a field the model reads as a tag) got another vector than the same
    streamer with it, said only in the server log (and not even there when another record had the field)."""
    import shutil
    from pathlib import Path

    run = tmp_path / "run"
    shutil.copytree(pretrained, run, ignore=shutil.ignore_patterns("checkpoints"))
    info = json.loads((run / "run.json").read_text())
    cache_meta = json.loads((Path(info["features"]) / "meta.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "feature_meta": {**cache_meta, "meta_tags": "kind,year:5"}}))
    app = create_app(sample_index / "idx", model=run, review_log=tmp_path / "r.jsonl", poll=0)
    with TestClient(app) as c:
        records = [{"anchor_id": "with", "nickname": "A", "meta": {"kind": "game", "year": 2001}},
                   {"anchor_id": "without", "nickname": "A"},
                   {"anchor_id": 7, "nickname": "A", "meta": {"kind": "", "year": "recent"}}]
        r = c.post("/embed", json={"records": records})
    assert r.status_code == 200 and len(r.json()["vectors"]) == 3
    said = "missing from the record's meta: the model reads these fields as tags, and the vector is made without them"
    assert r.json()["warnings"] == [
        {"anchor_id": "without", "meta": ["kind", "year"], "problem": said},
        {"anchor_id": "7", "meta": ["kind"], "problem": said},
        {"anchor_id": "7", "meta": ["year"],
         "problem": "not a number where the model buckets numbers: the vector is made without these tags"}]


def test_an_empty_or_whitespace_token_is_refused_at_start_up(sample_index, tmp_path, monkeypatch, capsys):
    """`--token ""` and `ANCHOR_EMBED_TOKEN=` served with no check at all, without a word; a token holding
    whitespace can never be sent as `Authorization: Bearer T`, so every client was refused."""
    import socket

    from anchor_embed.errors import AnchorEmbedError
    from tests.conftest import run_cli

    for token, why in (("", "is empty"), (" ", "holds whitespace"), ("s3cret ", "holds whitespace"),
                       ("s3 cret", "holds whitespace")):
        with pytest.raises(AnchorEmbedError, match=f"^--token \\(or ANCHOR_EMBED_TOKEN\\) {why}"):
            create_app(sample_index / "idx", token=token, review_log=tmp_path / "r.jsonl", poll=0)
    idx = str(sample_index / "idx")
    busy = socket.socket()                  # were a token let through, start-up would stop at the port
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        for env, args in (("", []), (None, ["--token", ""]), ("  ", [])):
            if env is None:
                monkeypatch.delenv("ANCHOR_EMBED_TOKEN", raising=False)
            else:
                monkeypatch.setenv("ANCHOR_EMBED_TOKEN", env)
            assert run_cli("serve", "--index", idx, "--port", str(busy.getsockname()[1]), *args) == 2, (env, args)
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1 and err.startswith("error: --token (or ANCHOR_EMBED_TOKEN) "), err
    finally:
        busy.close()


def test_misspelt_fields_and_parameters_are_refused_naming_them(lookup_client):
    """`{"ids": [...], "topk": 2}` and `?K=2&explian=1` were ignored (20 neighbours, unexplained), and
    `{"k": true}` was read as k=1: each is now 422 naming the key or the value; the documented ones still work."""
    c = lookup_client
    r = c.post("/similar", json={"ids": ["s0000"], "topk": 2})
    assert r.status_code == 422 and r.json() == {"detail": "topk: unknown field (POST /similar takes ids, k, explain)"}
    r = c.get("/similar/s0000", params={"K": 2, "explian": 1})
    assert r.status_code == 422 and r.json() == {
        "detail": "unknown query parameters 'K', 'explian': GET /similar/{anchor_id} takes k, explain"}
    assert c.post("/similar", params={"k": 2}, json={"ids": ["s0000"]}).json()["detail"] == \
        "unknown query parameter 'k': POST /similar takes none"
    for bad in (True, 2.0, "2"):
        r = c.post("/similar", json={"ids": ["s0000"], "k": bad})
        assert r.status_code == 422 and r.json()["detail"].startswith("k: Input should be a valid integer"), bad
    r = c.post("/review", json={"a": "s0000", "b": "dup00", "verdict": "same_owner", "reviwer": "ana"})
    assert r.status_code == 422 and r.json()["detail"].startswith("reviwer: unknown field")
    assert c.get("/search", params={"q": "s00", "limt": 2}).status_code == 422
    one = c.get("/similar/s0000", params={"k": 2, "explain": "true"}).json()                # documented: works
    assert len(one["neighbours"]) == 2 and "explain" in one["neighbours"][0]
    many = c.post("/similar", json={"ids": ["s0000", 5], "k": 2, "explain": True}).json()["results"]
    assert len(many[0]["neighbours"]) == 2 and "explain" in many[0]["neighbours"][0] and many[1]["anchor_id"] == "5"
    assert len(c.get("/search", params={"q": "s00", "limit": 2}).json()["matches"]) == 2
    assert c.post("/review", json={"a": "s0000", "b": "dup00", "verdict": "same_owner", "reviewer": "ana"}).status_code == 200
    assert c.get("/healthz").status_code == 200 and c.get("/metrics").status_code == 200


def test_a_stale_lock_does_not_hold_off_a_swap(sample_index, tmp_path):
    """Any `.lock` in the index folder held off every swap, also one a killed build left; a lock is now read as
    the writers read it: a live holder holds the swap off, a process gone from this host does not."""
    import os
    import shutil
    import socket
    import subprocess

    idx = tmp_path / "idx"
    shutil.copytree(sample_index / "idx", idx)
    app = create_app(idx, review_log=tmp_path / "r.jsonl", poll=0)
    served = app.state.served
    meta = json.loads((idx / "meta.json").read_text())
    (idx / "meta.json").write_text(json.dumps({**meta, "note": "rebuilt"}))       # a new build has landed
    live = {"pid": os.getpid(), "host": socket.gethostname(), "since": "now", "what": "index build"}
    (idx / ".lock").write_text(json.dumps(live))
    assert served.refresh() is False and served.swaps == 0                           # a build still writing
    dead = subprocess.Popen(["true"])
    dead.wait()
    (idx / ".lock").write_text(json.dumps({**live, "pid": dead.pid}))
    assert served.refresh() is True and served.swaps == 1 and served.lookup.meta["note"] == "rebuilt"


def _slash_index(sample_index, sample, tmp_path):
    """An index whose streamer s0001 is "team/alpha", with frames named with '#' and '?': (index, media root)."""
    import shutil

    from anchor_embed.serving.index import build_index

    vec, media = tmp_path / "vec", tmp_path / "media"
    shutil.copytree(sample_index / "vec", vec)
    shutil.copytree(sample, media)
    keys = ["team/alpha" if k == "s0001" else k for k in (vec / "keys.txt").read_text().split("\n")]
    (vec / "keys.txt").write_text("\n".join(keys))
    frame = json.loads((sample / "streamers.jsonl").read_text().splitlines()[0])["frames"][0]
    for name in ("one#1.png", "two?2.png"):
        shutil.copy(media / frame, media / "media" / name)
    labels = []
    for line in (vec / "labels.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["anchor_id"] == "s0001":
            row = {**row, "anchor_id": "team/alpha", "frames": ["media/one#1.png", "media/two?2.png"]}
        labels.append(json.dumps(row) + "\n")
    (vec / "labels.jsonl").write_text("".join(labels))
    build_index(vec, tmp_path / "idx")
    return tmp_path / "idx", media


def test_the_review_page_opens_an_id_holding_a_slash(sample_index, sample, tmp_path):
    """`GET /streamer/team%2Falpha` was a 404 though the page's own search listed the id, and neighbour cards of
    such ids lost their profile and frames."""
    idx, media = _slash_index(sample_index, sample, tmp_path)
    with TestClient(create_app(idx, media_root=media, review_log=tmp_path / "r.jsonl", poll=0)) as c:
        assert [m["anchor_id"] for m in c.get("/search", params={"q": "team/"}).json()["matches"]] == ["team/alpha"]
        r = c.get("/streamer/team%2Falpha")
        assert r.status_code == 200 and r.json()["anchor_id"] == "team/alpha"
        assert r.json()["frames"] == ["media/one#1.png", "media/two?2.png"]
        assert c.get("/streamer/s0000").json()["anchor_id"] == "s0000"
        assert c.get("/streamer/team%2Fbeta").json()["suggestions"][0] == "team/alpha"


@pytest.mark.skipif(__import__("shutil").which("node") is None, reason="no node to run the review page's script")
def test_the_review_pages_frame_urls_keep_hash_and_question_marks(sample_index, sample, tmp_path):
    """The page built frame URLs with encodeURI, which leaves '#' and '?': "one#1.png" was asked as "one", and
    vanished. Its own functions (run by node) now encode each path segment and name the streamer."""
    import re
    import subprocess

    from anchor_embed.serving.review import page_html

    idx, media = _slash_index(sample_index, sample, tmp_path)
    script = page_html().split("<script>")[1].split("</script>")[0]
    wanted = [line for line in script.splitlines() if re.match(r"const (esc|frameUrl|framesHtml) = ", line)]
    assert any(line.startswith("const framesHtml") for line in wanted)
    js = "\n".join(wanted) + '\nconsole.log(framesHtml(["media/one#1.png", "media/two?2.png"], "team/alpha"));'
    html = subprocess.run(["node", "-e", js], capture_output=True, text=True, timeout=60, check=True).stdout
    srcs = [s.replace("&amp;", "&") for s in re.findall(r'src="([^"]*)"', html)]
    assert len(srcs) == 2
    with TestClient(create_app(idx, media_root=media, review_log=tmp_path / "r.jsonl", poll=0)) as c:
        for src in srcs:
            assert c.get(src).content[:4] == b"\x89PNG", src
