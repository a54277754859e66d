"""Ids from clients: what cannot be one of ours is NOT_FOUND before any query."""

from __future__ import annotations

import uuid

import pytest

from resolvers.ids import parse_id, parse_int_id
from services.errors import NotFound


def test_a_uuid_id():
    value = uuid.uuid4()
    assert parse_id(str(value)) == value
    with pytest.raises(NotFound):
        parse_id("not-a-uuid")


@pytest.mark.parametrize("value", ["1", "42", "9" * 18])
def test_an_integer_id(value):
    assert parse_int_id(value) == int(value)


@pytest.mark.parametrize("value", ["", "-1", "1.0", " 1", "9" * 19, "١٢", "0x10"])
def test_what_cannot_be_an_integer_id_of_ours_names_nothing(value):
    with pytest.raises(NotFound, match="Error event not found"):
        parse_int_id(value, message="Error event not found.")
