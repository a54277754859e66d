"""Fitting a requested size to a model's aspect ratios or sizes (providers/sizes.py), shared
by the Gemini, Stability and OpenAI-compatible adapters."""

from __future__ import annotations

import pytest

from providers.sizes import nearest_ratio, nearest_size, parse_size

RATIOS = ("21:9", "16:9", "3:2", "5:4", "1:1", "4:5", "2:3", "9:16", "9:21")
GPT_IMAGE = ("1024x1024", "1536x1024", "1024x1536", "auto")


@pytest.mark.parametrize(
    ("width", "height", "ratio"),
    [(512, 512, "1:1"), (1920, 1080, "16:9"), (1080, 1920, "9:16"), (768, 512, "3:2")],
)
def test_the_nearest_aspect_ratio(width, height, ratio):
    assert nearest_ratio(width, height, RATIOS) == ratio


def test_a_tall_and_a_wide_size_are_as_far_from_square():
    assert nearest_ratio(200, 100, ("1:1", "4:1")) == nearest_ratio(100, 200, ("1:1", "1:4"))


def test_the_nearest_ratio_comes_before_the_nearest_area():
    sizes = ("256x256", "1536x1024", "512x512")
    assert nearest_size(300, 200, sizes) == "1536x1024"  # 3:2, though four times the area
    assert nearest_size(300, 300, sizes) == "256x256"
    assert nearest_size(450, 450, sizes) == "512x512"


def test_auto_is_never_chosen_and_nothing_to_choose_is_none():
    assert nearest_size(4000, 10, GPT_IMAGE) == "1536x1024"
    assert nearest_size(512, 512, ("auto",)) is None


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("1024x1536", (1024, 1536)), ("auto", None), ("0x5", None), ("10*10", None), ("", None)],
)
def test_sizes_are_width_x_height(text, parsed):
    assert parse_size(text) == parsed
