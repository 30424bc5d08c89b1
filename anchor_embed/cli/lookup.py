"""`similar` without typer: the lookup a user runs all day starts in a fraction of the CLI's start-up.

`anchor-embed similar ...` is answered here by argparse (numpy and faiss only, rich only to draw tables);
everything else, and `similar --help`, goes to the typer app, whose `similar` command calls the same
`run_similar`. A test checks both parsers give the same arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def run_similar(ids: list[str], k: int, index: Path, ids_file: Path | None, record: Path | None,
                media_root: Path | None, as_json: bool, explain: bool, strict: bool = False) -> int:
    """Answer and print; returns the exit code (1 when some ids are not in the index)."""
    from anchor_embed.errors import AnchorEmbedError
    from anchor_embed.serving.similar import Lookup

    ids = list(ids)
    if ids_file:
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
        sys.stdout.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    else:
        print_tables(look, [r for r in rows if r.get("found", True)])
    for r in unknown:
        hint = f"; did you mean {', '.join(repr(c) for c in r['suggestions'])}?" if r["suggestions"] else ""
        print(f"error: anchor_id {r['anchor_id']!r} is not in the index {index}{hint}", file=sys.stderr)
    return 1 if unknown else 0


def print_tables(look, rows: list[dict]) -> None:
    """One rich table per query: its neighbours with nickname, tags, score (and the explanation columns). Every
    cell and title is plain Text: a nickname "[bold]Boldy" or a tag "[/tag]" is data, not rich markup (and
    escaping it doubled a trailing backslash)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    for r in rows:
        me = look.label(r["anchor_id"])
        why = any("explain" in n for n in r["neighbours"])
        table = Table(title=Text(f"{r['anchor_id']}  {me.get('nickname', '')}  {', '.join(me.get('tags', []))}",
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
            table.add_row(*map(Text, cells))
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
