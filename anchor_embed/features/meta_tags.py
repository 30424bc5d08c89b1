"""Record `meta` fields as tags: "language=english", "total_followers=1e4.5", "year=1990..1995".

Why: metadata a platform holds for every streamer (a language, follower and view counts, a release year)
carries behaviour the backbones cannot read from texts or frames. As tags, the fusion model learns an
embedding per value or bucket, and the ridge reference sees the same tags one-hot, so every method reads the
same information. The buckets are fixed by the spec, not fitted to the data, so a streamer embedded later
gets the same tags it would have had in the training cache.

Spec: comma-separated `field` (the value itself, lower-cased: categories, flags), `field:log` (half-decade
buckets of log10 of a count: 1e4, 1e4.5, 1e5, ...; values below 1 fall in 1e0), or `field:W` (buckets of
width W: `year:5` gives year=1990..1995).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from anchor_embed.errors import AnchorEmbedError


@dataclass(frozen=True)
class MetaField:
    """One meta field and how its values become tags: 'value', 'log' or a bucket width."""

    name: str
    how: str | float

    def spec(self) -> str:
        if self.how == "value":
            return self.name
        return f"{self.name}:{self.how:g}" if isinstance(self.how, float) else f"{self.name}:{self.how}"


def parse_meta_tags(spec: str | None) -> list[MetaField]:
    """The fields of a `--meta-tags` spec; one line naming the bad part otherwise."""
    fields: list[MetaField] = []
    for part in (spec or "").split(","):
        part = part.strip()
        if not part:
            continue
        name, _, how = (x.strip() for x in part.partition(":"))
        if not name:
            raise AnchorEmbedError(f"--meta-tags: {part!r} names no field (field, field:log or field:WIDTH)")
        if not how:
            fields.append(MetaField(name, "value"))
        elif how == "log":
            fields.append(MetaField(name, "log"))
        else:
            try:
                width = float(how)
            except ValueError:
                width = float("nan")
            if not math.isfinite(width) or width <= 0:
                raise AnchorEmbedError(f"--meta-tags: {part!r}: after ':' comes 'log' or a bucket width > 0")
            fields.append(MetaField(name, width))
    if len({f.name for f in fields}) != len(fields):
        raise AnchorEmbedError(f"--meta-tags: a field is named twice in {spec!r}")
    return fields


def canonical_spec(fields: list[MetaField]) -> str | None:
    """The spec as stored in a cache's meta.json (None when no field is used), so two spellings compare equal."""
    return ",".join(f.spec() for f in fields) or None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def tags_of_meta(meta: dict[str, Any], fields: list[MetaField]) -> tuple[list[str], list[str]]:
    """(tags, fields whose value was not a number where a bucket needs one) of one record's `meta`.

    Absent, null and empty values give no tag; a list value gives one tag per element (value fields only).
    """
    tags: list[str] = []
    bad: list[str] = []
    for f in fields:
        value = meta.get(f.name)
        if value is None or (isinstance(value, (str, list)) and not value):
            continue
        if f.how == "value":
            for v in value if isinstance(value, list) else [value]:
                text = (str(v).lower() if not isinstance(v, bool) else "true" if v else "false").strip()
                if text:
                    tags.append(f"{f.name}={text}")
            continue
        x = _number(value)
        if x is None:
            bad.append(f.name)
        elif f.how == "log":
            tags.append(f"{f.name}=1e{math.floor(2 * math.log10(max(x, 1.0))) / 2:g}")
        else:
            lo = math.floor(x / f.how) * f.how
            tags.append(f"{f.name}={lo:g}..{lo + f.how:g}")
    return tags, bad


def meta_tag_mask(tag_names: list[str], spec: str | None) -> np.ndarray:
    """True for the cache's tags that came from meta fields of `spec` (a `field=` prefix, as cached: lower case)."""
    prefixes = tuple(f"{f.name.lower()}=" for f in parse_meta_tags(spec))
    return np.array([bool(prefixes) and t.startswith(prefixes) for t in tag_names], bool)
