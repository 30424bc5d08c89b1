"""Flags made from a run config's fields, so a command's flags, their help and their defaults have one source.

`@config_flags(PretrainConfig, "epochs", "lr", ...)` adds `--epochs`, `--lr`, ... to a command, each with
the field's description and default in its help; the command receives the flags that were given as
`overrides` (a dict), which `anchor_embed.config.resolve` lays over the config file and the defaults.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Annotated, Any, Optional

import typer
from pydantic import BaseModel


def _help(field) -> str:
    """The field's description with its default, e.g. 'Epochs to train (default 20).'."""
    text = (field.description or "").rstrip(".")
    if field.is_required():                     # no default to show (pydantic's sentinel is no help)
        return f"{text} (required)." if text else "(required)."
    default = "none" if field.default is None else field.default
    return f"{text} (default {default})." if text else f"(default {default})."


def config_flags(model: type[BaseModel], *names: str) -> Callable[[Callable], Callable]:
    """Decorator: add an optional flag per config field in `names`; pass the given ones on as `overrides`."""

    def wrap(command: Callable) -> Callable:
        sig = inspect.signature(command, eval_str=True)
        own = [p for p in sig.parameters.values() if p.name != "overrides"]
        added = []
        for name in names:
            field = model.model_fields[name]
            option = typer.Option(help=_help(field), show_default=False)
            added.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                           annotation=Annotated[Optional[field.annotation], option]))  # noqa: UP045

        @functools.wraps(command)
        def run(**kwargs: Any) -> Any:
            overrides = {n: kwargs.pop(n) for n in names}
            return command(**kwargs, overrides=overrides)

        run.__signature__ = sig.replace(parameters=[p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]
                                        + added)
        return run
    return wrap
