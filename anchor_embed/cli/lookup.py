"""`similar` without typer: the lookup a user runs all day starts in a fraction of the CLI's start-up.

`anchor-embed similar ...` is answered here by argparse (numpy and faiss only, rich only to draw tables);
everything else, and `similar --help`, goes to the typer app, whose `similar` command calls the same
`run_similar`. A test checks both parsers give the same arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path


def run_similar(ids: list[str], k: int, index: Path, ids_file: Path | None, record: Path | None,
                media_root: Path | None, as_json: bool, explain: bool, strict: bool = False) -> int:
    """Answer and print; returns the exit code (1 when some ids are not in the index)."""
    from anchor_embed.errors import AnchorEmbedError
    from anchor_embed.serving.similar import Lookup

    ids = list(ids)
    if ids_file:
        if Path(ids_file).is_dir():
            raise AnchorEmbedError(f"{ids_file}: a folder; --ids-file takes a file of anchor ids, one a line")
        if not Path(ids_file).is_file():
            raise AnchorEmbedError(f"{ids_file}: no such file")
        from anchor_embed.data.key_file import read_keys

        ids += [x.strip() for x in read_keys(ids_file) if x.strip()]
    if not ids and not record:
        raise AnchorEmbedError("give anchor ids, --ids-file or --record")
    once = list(dict.fromkeys(ids))
    if len(once) < len(ids):                   # a batch file listing an id twice gets one answer for it
        from anchor_embed.progress import say

        say(f"[yellow]similar[/]: {len(ids) - len(once)} repeated id(s) answered once")
        ids = once
    if not 1 <= k <= 100_000:
        raise AnchorEmbedError(f"-k {k}: between 1 and 100000")
    look = Lookup.open(index)  # opened once for the lookups and the labels of the table
    answered = []
    if record:
        from anchor_embed.serving.similar import similar_to_records

        answered = similar_to_records(record, look, k, media_root=media_root, strict=strict, explain=explain)
    by_record = {r["anchor_id"]: r for r in answered}
    looked = [x for x in ids if x not in by_record]  # an id also given as a record is answered from the record
    found = iter([n.to_dict() for n in look.similar(looked, k, explain=explain)] if looked else [])
    # in the order asked: the ids as given, then the records no id named
    rows = [by_record[x] if x in by_record else next(found) for x in ids]
    rows += [r for r in answered if r["anchor_id"] not in set(ids)]
    unknown = [r for r in rows if r.get("found") is False]
    if as_json:
        sys.stdout.write("".join(json_line(r) for r in rows))
    else:
        print_tables(look, [r for r in rows if r.get("found", True)])
    for r in unknown:
        hint = f"; did you mean {', '.join(repr(c) for c in r['suggestions'])}?" if r["suggestions"] else ""
        print(f"error: anchor_id {r['anchor_id']!r} is not in the index {index}{hint}", file=sys.stderr)
    return 1 if unknown else 0


# what a terminal acts on instead of showing, in a streamer's nickname or tags: C0 and C1 controls and DEL (ESC
# opens sequences that erase rows or move the cursor over them, CR returns over a line), and the bidi embeddings,
# overrides and isolates (they reverse what follows them on terminals that reorder)
ACTING = re.compile(r"([\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069])")


def escaped(ch: str) -> str:
    """A character that acts on the terminal, as its visible escape: \\x1b, \\u202e."""
    return f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"


def json_line(row: dict) -> str:
    """One JSON line as `--json` prints it: the same value, with the characters JSON leaves raw that a terminal
    acts on (DEL, C1 controls, bidi overrides; JSON escapes C0 itself) written as \\u escapes, so that a
    nickname cannot rewrite the screen of whoever reads the lines there."""
    return ACTING.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(row, ensure_ascii=False)) + "\n"


def cell(text: str, style: str = ""):
    """Streamer-supplied text for a table: rich Text (never markup) with what a terminal acts on shown as its
    escape (`escaped`), set off in red so that it reads apart from a backslash written in the text."""
    from rich.text import Text

    out = Text(style=style)
    for i, part in enumerate(ACTING.split(text)):
        if part:
            out.append(escaped(part), style="bold red") if i % 2 else out.append(part)
    return out


def print_tables(look, rows: list[dict]) -> None:
    """One rich table per query: its neighbours with nickname, tags, score (and the explanation columns). Every
    cell and title is plain Text: a nickname "[bold]Boldy" or a tag "[/tag]" is data, not rich markup (and
    escaping it doubled a trailing backslash); a control character in it is shown as its escape, never sent to the
    terminal (a nickname "ok\\x1b[2K\\x1b[1A" erased the row above it)."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for r in rows:
        me = look.label(r["anchor_id"])
        why = any("explain" in n for n in r["neighbours"])
        table = Table(title=cell(f"{r['anchor_id']}  {me.get('nickname', '')}  {', '.join(me.get('tags', []))}",
                                 style="table.title"),
                      caption="text, frames, tags: cosine of that modality alone; shared: tags in common" if why else None)
        longest = max((len(n["anchor_id"]) for n in r["neighbours"]), default=9)
        # with --explain the neighbour's own tags give way to the shared ones, so the row fits 80 columns
        for col in ("#", "anchor_id", "nickname", *(("score", "text", "frames", "tags", "shared") if why
                                                    else ("tags", "score"))):
            # an id is what a user copies: never cut (on 80 columns it was 'anchor…'); words wrap instead
            table.add_column(col, min_width={"anchor_id": max(longest, 9), "nickname": 10}.get(col),
                             no_wrap=col not in ("nickname", "tags", "shared") or (why and col == "tags"))
        for i, n in enumerate(r["neighbours"], 1):
            cells = [str(i), n["anchor_id"], n.get("nickname") or ""]
            if why:
                e = n["explain"]
                cells += [f"{n['score']:.3f}", *("-" if e[m] is None else f"{e[m]:.2f}" for m in ("text", "frames", "tags")),
                          ", ".join(e["shared_tags"])]
            else:
                cells += [", ".join(n.get("tags", [])), f"{n['score']:.3f}"]
            table.add_row(*map(cell, cells))
        console.print(table)


def parser() -> argparse.ArgumentParser:
    """The same arguments as the typer `similar` command (kept equal by a test)."""
    p = argparse.ArgumentParser(prog="anchor-embed similar", add_help=False)
    p.add_argument("anchor_ids", nargs="*")
    p.add_argument("-k", type=int, default=20)
    p.add_argument("--index", type=Path, default=Path(os.environ.get("ANCHOR_EMBED_INDEX", "index")))
    p.add_argument("--ids-file", type=Path)
    p.add_argument("--record", type=Path)
    p.add_argument("--media-root", type=Path)
    p.add_argument("--json", dest="as_json", action="store_true")
    p.add_argument("--explain", action="store_true")
    p.add_argument("--strict", action="store_true")
    p.add_argument("--quiet", "-q", action="store_true")     # the root's flag, also taken after the command
    return p


def parse(argv: list[str]) -> dict | None:
    """Arguments of a `similar` call, or None when argparse cannot take it (help, an unknown flag)."""
    if any(a in ("--help", "-h") for a in argv):
        return None
    try:
        args, rest = parser().parse_known_args(argv)
    except SystemExit:
        return None
    return None if rest else vars(args)


def main(argv: list[str] | None = None) -> None:
    """The console script: `similar` fast, anything else through the typer app."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv[1:]) if argv[:1] == ["similar"] else None
    if args is None:
        from anchor_embed.cli.app import main as full

        return full(argv)
    from anchor_embed.errors import AnchorEmbedError

    if args.pop("quiet"):
        from anchor_embed.progress import console

        console.quiet = True
    try:
        code = run_similar(args.pop("anchor_ids"), **args)
    except AnchorEmbedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    if code:
        sys.exit(code)


if __name__ == "__main__":
    main()
