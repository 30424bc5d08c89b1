"""Status lines: `warnings_only` quietens its own caller, not the other threads of the process."""

import threading

from anchor_embed.progress import make_progress, say, warnings_only


def test_warnings_only_quietens_its_own_thread_and_not_another(capsys):
    """It was a process-wide counter: one server thread's `Model.encode(quiet=True)` silenced every status line
    and progress bar another thread printed meanwhile."""
    inside, done = threading.Event(), threading.Event()
    heard: dict[str, bool] = {}

    def quiet_caller():
        with warnings_only():
            say("quiet thread status")
            say("[yellow]quiet thread warning")
            heard["bar off"] = make_progress().disable
            inside.set()
            done.wait(10)

    t = threading.Thread(target=quiet_caller)
    t.start()
    assert inside.wait(10)
    say("main thread status")
    main_bar_off = make_progress().disable
    done.set()
    t.join()
    err = capsys.readouterr().err
    assert "main thread status" in err and "quiet thread warning" in err and "quiet thread status" not in err
    assert heard["bar off"] and not main_bar_off
    say("after")
    assert "after" in capsys.readouterr().err


def test_counted_puts_the_noun_in_the_number_it_takes():
    from anchor_embed.progress import counted

    assert [counted(n, "group") for n in (0, 1, 2)] == ["0 groups", "1 group", "2 groups"]
    assert counted(1, "query", "queries") == "1 query" and counted(3, "query", "queries") == "3 queries"
