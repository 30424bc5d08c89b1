"""`anchor-embed`: the one module that builds the command line. Bad input ends in one line on stderr and
exit code 2, never a traceback.

Command functions live in `pipeline.py` and `serving.py` and import nothing from here, so the app is
complete however it is reached: the `anchor-embed` script, `python -m anchor_embed.cli[.app]`, or
`typer.testing.CliRunner` on `app`.
"""

from __future__ import annotations

import functools
import importlib
import sys

import click
import typer
from typer.core import TyperGroup

from anchor_embed.errors import AnchorEmbedError

# every command: name -> 'module:object' (a command function, or a Typer app of subcommands). Commands are
# built on first use, so a call imports only its own module: `similar` never pays for the training flags.
COMMANDS = {
    "features": "anchor_embed.cli.pipeline:features",
    "pretrain": "anchor_embed.cli.pipeline:pretrain",
    "transfer": "anchor_embed.cli.pipeline:transfer",
    "evaluate": "anchor_embed.cli.pipeline:evaluate",
    "probe": "anchor_embed.cli.pipeline:probe",
    "adapt": "anchor_embed.cli.pipeline:adapt",
    "embed": "anchor_embed.cli.serving:embed",
    "predict": "anchor_embed.cli.serving:predict",
    "export": "anchor_embed.cli.serving:export",
    "index": "anchor_embed.cli.serving:index_app",
    "similar": "anchor_embed.cli.serving:similar",
    "serve": "anchor_embed.cli.serving:serve",
    "dedup": "anchor_embed.cli.serving:dedup",
    "scatter": "anchor_embed.cli.serving:scatter_app",
    "spark": "anchor_embed.cli.spark:app",
    "demo": "anchor_embed.cli.pipeline:demo",
}


class LazyCommands(TyperGroup):
    """The root group: lists every command, builds one (importing its module) only when it is called or shown."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, _, attr = COMMANDS[name].partition(":")
        obj = getattr(importlib.import_module(module), attr)
        if not isinstance(obj, typer.Typer):
            single = typer.Typer(add_completion=False)
            single.command(name)(obj)
            obj = single
        command = typer.main.get_command(obj)
        command.name = name
        _take_quiet(command)
        return command


def _quiet(value: bool) -> None:
    if value:
        from anchor_embed.progress import console

        console.quiet = True


def _quiet_flag(quiet: bool = typer.Option(False, "--quiet", "-q", callback=_quiet, expose_value=False,
                                           help="No progress bars or status lines; errors still show.")) -> None:
    """Only its option is used: typer builds it in its own click (a typer command's params must be typer's)."""


def _take_quiet(command) -> None:
    """Every command (and subcommand) takes the root's `--quiet/-q` too, so it works after the command name."""
    if hasattr(command, "commands"):
        for sub in command.commands.values():
            _take_quiet(sub)
    elif not any(p.name == "quiet" for p in command.params):
        command.params.append(_quiet_option())


@functools.cache
def _quiet_option():
    """The `--quiet/-q` option as typer builds it, built once a process (a click option holds no per-call state)."""
    one = typer.Typer(add_completion=False)
    one.command()(_quiet_flag)
    return typer.main.get_command(one).params[0]


app = typer.Typer(cls=LazyCommands, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Content embeddings of live-streamers, taught by ID embeddings.")


def _version(value: bool) -> None:
    if value:
        from anchor_embed import __version__

        print(f"anchor-embed {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_version,
                                 help="Print the version and exit."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or status lines; errors still show."),
) -> None:
    """Content embeddings of live-streamers, taught by ID embeddings."""
    from anchor_embed.progress import console

    console.quiet = quiet  # set on every call: an in-process caller may run several commands


def path_error(exc: OSError) -> str | None:
    """One line for an output or input path of the wrong kind (a file where a folder goes, a folder where a file
    goes, no permission), naming the path the user gave; None when the error names no path."""
    if isinstance(exc, IsADirectoryError):          # os.replace(tmp, path) names the target second
        path = exc.filename2 or exc.filename
        return None if path is None else f"{path}: is a folder; give a file path here (or remove the folder)"
    if exc.filename is None:
        return None
    if isinstance(exc, FileExistsError):
        return f"{exc.filename}: exists and is not a folder; give a folder path here (or remove the file)"
    if isinstance(exc, NotADirectoryError):
        return f"{exc.filename}: part of this path is a file, not a folder"
    return f"{exc.filename}: permission denied"


def main(argv: list[str] | None = None) -> None:
    """Run the CLI: an AnchorEmbedError is printed as one line with exit code 2."""
    try:
        code = app(args=argv, standalone_mode=False)  # a command's typer.Exit(n) comes back as n here
        if isinstance(code, int) and code:
            sys.exit(code)
    except AnchorEmbedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except (FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        said = path_error(exc)
        if said is None:
            raise
        print(f"error: {said}", file=sys.stderr)
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
