"""Fitting the width x height a user asked for to what a model takes: the nearest of its
aspect ratios ("W:H", Gemini and Stability) or of its sizes ("WxH", OpenAI's image models).
Nearest means the closest aspect ratio first (measured on a log scale, so 2:1 and 1:2 are
as far from 1:1), then, among sizes of that ratio, the closest area."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

_SIZE = re.compile(r"^([1-9]\d{0,4})x([1-9]\d{0,4})$")


def parse_size(size: str) -> tuple[int, int] | None:
    """'1024x1536' -> (1024, 1536); None for anything else (such as 'auto')."""
    found = _SIZE.match(size)
    return (int(found.group(1)), int(found.group(2))) if found else None


def nearest_ratio(width: int, height: int, ratios: Iterable[str]) -> str:
    """The ratio ('W:H') closest to width:height; the first listed wins a tie."""

    def distance(ratio: str) -> float:
        w, h = ratio.split(":")
        return _ratio_distance(width, height, int(w), int(h))

    return min(ratios, key=distance)


def nearest_size(width: int, height: int, sizes: Iterable[str]) -> str | None:
    """The size ('WxH') closest to width x height: nearest aspect ratio, then nearest area.
    Entries that are not WxH ('auto') are never chosen; None when there is no WxH entry."""
    candidates = [(size, dims) for size in sizes if (dims := parse_size(size)) is not None]
    if not candidates:
        return None
    area = width * height

    def distance(candidate: tuple[str, tuple[int, int]]) -> tuple[float, float]:
        w, h = candidate[1]
        return (round(_ratio_distance(width, height, w, h), 9), abs(math.log(w * h / area)))

    return min(candidates, key=distance)[0]


def _ratio_distance(width: int, height: int, w: int, h: int) -> float:
    return abs(math.log(w / h) - math.log(width / height))
