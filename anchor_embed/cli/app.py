"""`anchor-embed` entry point: bad input ends in one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import sys

import typer

from anchor_embed.errors import AnchorEmbedError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Content embeddings of live-streamers, taught by ID embeddings.")


@app.callback()
def _root() -> None:
    """Content embeddings of live-streamers, taught by ID embeddings."""


def _register() -> None:
    """Import command modules (each adds its commands to `app`); kept light so `similar` starts fast."""
    from anchor_embed.cli import commands  # noqa: F401


def main(argv: list[str] | None = None) -> None:
    _register()
    try:
        app(args=argv, standalone_mode=False)
    except AnchorEmbedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:  # usage errors of typer's click: shown as click shows them
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):
            exc.show()
            sys.exit(exc.exit_code)
        if type(exc).__name__ == "Abort":
            sys.exit(1)
        raise

if __name__ == "__main__":
    main()
