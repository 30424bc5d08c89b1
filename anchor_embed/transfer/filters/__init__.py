"""Semantic filters of mined pairs: each scores how alike two streamers are in content; registered by name.

A filter is a function `(FilterInputs) -> Score | None` in its own module; adding one is that module plus
one line below. `none` keeps every mined pair.
"""

from anchor_embed.registry import Registry

FILTERS = Registry("filter", {
    "content": "anchor_embed.transfer.filters.content:content_score",
    "text": "anchor_embed.transfer.filters.text:text_score",
    "nickname": "anchor_embed.transfer.filters.nickname:nickname_score",
    "none": "anchor_embed.transfer.filters.base:keep_all",
})
