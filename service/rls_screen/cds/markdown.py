"""Markdown escaping for data-derived text in card details (lab strings, order names, citation texts)."""

from __future__ import annotations

import re

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|<>~])")


def md(text: str) -> str:
    """Escape data-derived text so it cannot inject markdown or links."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(text.split()))
