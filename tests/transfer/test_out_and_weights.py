"""QA sweep 6 findings of transfer: an --out of someone else's files, ALDI weights files, a repeated --choose
value, a changed --method on --resume, too few streamers to validate, and a resumed finished --choose."""

import json

import numpy as np
import pytest

from anchor_embed.errors import AnchorEmbedError
from anchor_embed.transfer.choose import parse_choices
from anchor_embed.transfer.methods.aldi import read_counts
from tests.conftest import run_cli


def _transfer(pretrained, ids, out, *extra):
    return run_cli("transfer", "--pretrained", pretrained, "--id-emb", ids, "--out", out, "--batch-size", "16",
                   "--epochs", "1", *extra)


def test_an_out_holding_files_the_run_did_not_write_is_refused_before_any_work(sample, pretrained, sample_index,
                                                                               tmp_path, capsys):
    """F1: a user's folder had its README.md and config.json replaced; a vectors folder got a run mixed in."""
    user = tmp_path / "user"
    user.mkdir()
    (user / "README.md").write_text("my own notes - do not lose\n")
    (user / "config.json").write_text('{"mine": 1}\n')
    capsys.readouterr()
    # refused before the ID embeddings are read: an absent file shows which check runs first
    assert _transfer(pretrained, tmp_path / "absent.npy", user) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"--out {user}: holds files a transfer run would replace (README.md, config.json)" in err, err
    assert (user / "README.md").read_text() == "my own notes - do not lose\n"
    assert sorted(p.name for p in user.iterdir()) == ["README.md", "config.json"]
    vectors = sample_index / "vec"
    before = sorted(p.name for p in vectors.iterdir())
    assert _transfer(pretrained, sample / "ids.npy", vectors) == 2
    assert "an `embed` vectors folder; give the transfer run a folder of its own" in capsys.readouterr().err
    assert sorted(p.name for p in vectors.iterdir()) == before
    assert _transfer(pretrained, sample / "ids.npy", sample_index / "idx", "--choose", "input_dropout=0,0.2") == 2
    assert "an index folder; give the transfer run a folder of its own" in capsys.readouterr().err
    assert _transfer(pretrained, sample / "ids.npy", user, "--members", "2") == 2
    assert "holds files a transfer run would replace (" in capsys.readouterr().err
    assert _transfer(pretrained, sample / "ids.npy", user, "--resume", "--lr", "0.01") == 2   # not 'settings differ'
    assert "holds files a transfer run would replace (" in capsys.readouterr().err
    assert _transfer(pretrained, sample / "ids.npy", pretrained, "--resume") == 2      # another stage's run
    assert f"--out {pretrained}: holds a pretrain run, not a transfer run" in capsys.readouterr().err
    assert run_cli("pretrain", "--features", tmp_path / "absent", "--out", user) == 2
    assert "holds files a pretrain run would replace (README.md, config.json)" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _transfer(pretrained, sample / "ids.npy", empty) == 0                      # an empty folder is fine
    assert _transfer(pretrained, sample / "ids.npy", empty, "--resume", "--epochs", "2") == 0     # and its run
    assert len((empty / "metrics.jsonl").read_text().splitlines()) == 2
    logged = tmp_path / "logged"                  # `mkdir OUT; transfer ... > OUT/train.log`: the log is no clash
    logged.mkdir()
    (logged / "train.log").write_text("started\n")
    assert _transfer(pretrained, sample / "ids.npy", logged, "--epochs", "1") == 0
    assert (logged / "train.log").read_text() == "started\n" and (logged / "model.safetensors").is_file()


def _counts(tmp_path, text, name="w.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_weights_file_line_with_a_bad_count_is_one_error_naming_it(tmp_path):
    """F3: NaN counts trained a NaN model, negative ones pushed streamers away, inf and lines without a comma or
    an id passed in silence."""
    keys = ["a", "b", "c", "d"]
    rows = np.arange(4)
    for text, line, why in [
            ("anchor_id,count\na,1\nb,nan\nc,-3\nd,inf\n", 3, "count 'nan' is not a finite number of at least 0"),
            ("a,1\nb,-2\n", 2, "count '-2' is not a finite number of at least 0"),
            ("a,1\nb,1e400\n", 2, "count '1e400' is not a finite number"),
            ("a,1\nb\n", 2, "expected anchor_id,count, got 1 field"),
            ("a,1\n,4\n", 2, "blank anchor_id"),
            ("a,1\nb,many\n", 2, "count 'many' is not a number")]:
        path = _counts(tmp_path, text)
        with pytest.raises(AnchorEmbedError, match=f"^{path}: line {line}: {why}") as got:
            read_counts(path, keys, rows)
        assert "\n" not in str(got.value)
    path = _counts(tmp_path, "anchor_id,count\na,1\nb,nan\nc,-3\nd,inf\n")
    with pytest.raises(AnchorEmbedError, match=r"line 3: .* \(2 more bad lines\)"):
        read_counts(path, keys, rows)


def test_a_weights_file_skips_and_counts_repeated_and_unknown_ids_and_must_weigh_a_training_streamer(tmp_path):
    """F3: a repeated id (the last one won) and an unknown id passed in silence; a file that matched no training
    streamer trained nothing (every weight 0, loss 0) without a word."""
    from anchor_embed.data.input_report import InputReport

    keys = ["a", "b", "c", "d"]
    path = _counts(tmp_path, "anchor_id,count\na,5\nb,2\n\na,9\nzz,1\n")
    report = InputReport(source=str(path))
    counts = read_counts(path, keys, np.array([0, 1, 2]), report)
    assert counts.tolist() == [5, 2, 0, 0]                                  # the first of a repeated id is kept
    assert report.kept == 2 and dict(report.kinds) == {"repeated id": 1, "unknown id": 1}
    assert "line 5: anchor_id 'a' given again (first on line 2; first kept)" in report.problems[0]
    for text in ("anchor_id,count,source\na,5,web\nb,2,app\n", "a,5,\nb,2,\n"):    # an export's extra columns
        assert read_counts(_counts(tmp_path, text), keys, np.array([0, 1])).tolist() == [5, 2, 0, 0]
    assert report.notes == ["2 of the 3 training streamers have a count above 0; the rest weigh 0"]
    for text in ["id,n\nfoo,1\n", "", "c,4\nd,0\n"]:          # no training streamer (rows a, b) gets a count
        with pytest.raises(AnchorEmbedError, match="gives none of the 2 training streamers a count above 0"):
            read_counts(_counts(tmp_path, text), keys, np.array([0, 1]))


def test_cli_refuses_a_bad_weights_file_before_mining(sample, pretrained, tmp_path, capsys):
    keys = (sample / "ids.keys.txt").read_text().split()
    bad = _counts(tmp_path, "anchor_id,count\n" + "".join(f"{k},{'nan' if i % 3 == 0 else i}\n"
                                                          for i, k in enumerate(keys)))
    capsys.readouterr()
    assert _transfer(pretrained, sample / "ids.npy", tmp_path / "t", "--method", "aldi", "--param",
                     f"weights_file={bad}") == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"error: {bad}: line 2: count 'nan'" in err and "mined" not in err, err
    assert not (tmp_path / "t").exists()


def test_a_repeated_choose_value_is_refused_before_any_training(sample, pretrained, tmp_path, capsys):
    """F9: the first candidate trained, then the second (the same folder) failed and left a half-made OUT."""
    for spec, said in [("input_dropout=0.2,0.2", "--choose input_dropout: value 0.2 given twice"),
                       ("input_dropout=0,0.2,0.0", "value 0 given twice (0 and 0.0 are the same)"),
                       ("params.temperature=0.1,0.05,0.1", "--choose params.temperature: value 0.1 given twice")]:
        with pytest.raises(AnchorEmbedError, match=said.replace("(", r"\(").replace(")", r"\)")):
            parse_choices([spec])
    capsys.readouterr()
    assert _transfer(pretrained, sample / "ids.npy", tmp_path / "v", "--choose", "input_dropout=0.2,0.2") == 2
    assert "value 0.2 given twice" in capsys.readouterr().err
    assert not (tmp_path / "v").exists()


def test_resume_with_another_method_names_the_method(sample, pretrained, tmp_path, capsys):
    """F10: it said "unknown key 'params.temperature' (method 'feature' takes: feature_loss)"."""
    out = tmp_path / "kr"
    assert _transfer(pretrained, sample / "ids.npy", out, "--epochs", "2") == 0
    before = (out / "config.json").read_text()
    capsys.readouterr()
    assert _transfer(pretrained, sample / "ids.npy", out, "--resume", "--method", "feature") == 2
    err = " ".join(capsys.readouterr().err.split())
    assert (f"{out}: --resume with settings that differ from the saved run (method: saved 'contrastive', asked "
            "'feature'); only device, epochs, precision, threads may change") in err, err
    assert (out / "config.json").read_text() == before


def test_too_few_streamers_to_validate_is_said_and_nothing_claims_a_validation_choice(sample, pretrained,
                                                                                      tmp_path, capsys):
    """F13: with 12 streamers it said the map was chosen on validation, marked every epoch '(best)', and wrote
    the monitor into outcome.json, though nothing validated."""
    keys = (sample / "ids.keys.txt").read_text().split()[:12]
    np.save(tmp_path / "tiny.npy", np.load(sample / "ids.npy")[:12])
    (tmp_path / "tiny.keys.txt").write_text("\n".join(keys) + "\n")
    out = tmp_path / "tiny"
    capsys.readouterr()
    assert _transfer(pretrained, tmp_path / "tiny.npy", out, "--epochs", "2", "--batch-size", "4") == 0
    err = " ".join(capsys.readouterr().err.split())
    assert ("no validation streamers (12 streamer(s) with ID embeddings to learn from; a validation share needs 20 "
            "or more): no epoch selection or early stop, the last epoch is kept; of --map auto's maps only the "
            "kernel map is fitted and kept") in err, err
    assert "on validation" not in err and "(best)" not in err
    assert err.count("no validation streamers") == 1
    outcome = json.loads((out / "outcome.json").read_text())
    assert outcome["monitor"] is None and outcome["best"] is None and outcome["best_epoch"] == 2
    assert set(json.loads((out / "run.json").read_text())["linear_map"]) == {"share", "kernel"}


def test_resume_of_a_finished_choice_redoes_nothing(sample, pretrained, tmp_path, capsys):
    """F15: every finished candidate mined again, refitted its map and rewrote its model (56 s for nothing)."""
    out = tmp_path / "ch"
    args = ["--choose", "input_dropout=0,0.2"]
    assert _transfer(pretrained, sample / "ids.npy", out, *args) == 0
    models = sorted(out.glob("candidates/*/model.safetensors"))
    stamps = [p.stat().st_mtime_ns for p in models]
    capsys.readouterr()
    assert run_cli("transfer", "--pretrained", pretrained, "--id-emb", sample / "ids.npy", "--out", out,
                   "--resume") == 0
    err = " ".join(capsys.readouterr().err.split())
    assert err.count("finished already (1 epoch, stopped by epochs); nothing to redo") == 2, err
    assert "mined" not in err and "map of" not in err
    assert [p.stat().st_mtime_ns for p in models] == stamps
    assert "kept input_dropout=" in err
    assert run_cli("transfer", "--pretrained", pretrained, "--id-emb", sample / "ids.npy", "--out", out,
                   "--resume", "--method", "feature") == 2       # F10 for a choice: the method named
    assert "differ from the saved choice (method: saved 'contrastive', asked 'feature')" in capsys.readouterr().err
    other = tmp_path / "other.npy"               # a finished run resumed with other inputs is still refused
    np.save(other, np.load(sample / "ids.npy")[:, ::-1].copy())
    (tmp_path / "other.keys.txt").write_text((sample / "ids.keys.txt").read_text())
    assert run_cli("transfer", "--pretrained", pretrained, "--id-emb", other, "--out", out, "--resume") == 2
    assert "other inputs than the saved run (id_emb changed by content)" in capsys.readouterr().err


def test_a_cache_of_other_backbones_or_meta_tags_is_refused_before_training(sample, sample_cache, pretrained,
                                                                           tmp_path, capsys):
    """`transfer --features` of another spec than the pretrained run's (a twitch run given the movielens cache)
    said one line and trained on inputs the model never saw, a model evaluate then refused; now refused before
    any work, as evaluate refuses it."""
    other = tmp_path / "cache"
    assert run_cli("features", "--streamers", sample / "streamers.jsonl", "--out", other, "--media-root", sample,
                   "--meta-tags", "kind", "--reuse", sample_cache) == 0
    capsys.readouterr()
    out = tmp_path / "t"
    assert run_cli("transfer", "--pretrained", pretrained, "--id-emb", sample / "ids.npy", "--features", other,
                   "--out", out, "--epochs", "1") == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "trained on features with meta_tags None (--features has 'kind'); teach it with a cache made with" in err
    assert not (out / "model.safetensors").exists()


@pytest.mark.parametrize("method", ["aldi", "contrastive"])
def test_the_weights_file_is_read_once_and_the_method_gets_the_counts_the_check_read(tmp_path, method):
    """The file was read before mining (to refuse a bad one) and again when the method was built: the counts
    check_inputs returns reach the method (TransferData.checked_inputs), so the file may be gone by then."""
    import torch

    from anchor_embed.transfer.methods import METHODS
    from anchor_embed.transfer.methods.base import TransferData

    n = 12
    keys = [f"s{i}" for i in range(n)]
    path = _counts(tmp_path, "anchor_id,count\n" + "".join(f"s{i},{3 * i}\n" for i in range(n)))
    cls = METHODS.load(method)
    params = cls.Params(weights_file=str(path), weight_scale=0.05)
    counts = cls.check_inputs(params, keys, np.arange(n))
    assert counts is not None and counts.tolist() == [3 * i for i in range(n)]
    path.unlink()                                       # a second read would fail: there is none
    q = np.arange(n)
    data = TransferData(np.random.default_rng(0).normal(size=(n, 4)).astype(np.float32), np.arange(n), q,
                        (q + 1) % n, np.ones(n, np.float32), keys=keys, checked_inputs=counts)
    built = cls(5, data, params, seed=0)
    torch.testing.assert_close(built.weights, torch.tanh(0.05 * torch.arange(n, dtype=torch.float32) * 3))
    assert cls.check_inputs(cls.Params(), keys, np.arange(n)) is None         # no file, nothing read
