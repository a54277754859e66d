"""Which parsed documents the schema keeps: only those that validated, within a number and a
total size, so that documents callers invent cannot fill the process's memory (and lengthen
every full garbage collection)."""

from __future__ import annotations

import functools
import uuid

from graphql import parse

from schema.build import build_schema
from schema.documents import DocumentParsing, ValidDocuments
from tests.support.schema import request_context


def documents_of(schema) -> ValidDocuments:
    return next(
        e.args[0]
        for e in schema.extensions
        if isinstance(e, functools.partial) and e.func is DocumentParsing
    )


async def test_only_documents_that_validated_are_kept(world):
    schema = build_schema(world.settings)
    kept = documents_of(schema)
    name = uuid.uuid4().hex
    valid = f"query V{name} {{ models {{ id }} }}"
    invalid = f"query I{name} {{ models {{ idd }} }}"
    too_deep = f"query D{name} {{ me {{ " + "credits { " * 13 + "available" + " }" * 14
    for document in (valid, invalid, too_deep):
        await schema.execute(document, context_value=request_context(world.settings))
    assert kept.get(valid) is not None
    assert kept.get(invalid) is None
    assert kept.get(too_deep) is None


def test_the_kept_documents_are_bounded_in_number_and_text():
    kept = ValidDocuments(maxsize=3, max_chars=100)
    texts = [f"{{ a{i} }}" + " " * 20 for i in range(4)]
    for text in texts:
        kept.keep(text, parse(text))
    assert [kept.get(t) is not None for t in texts] == [False, True, True, True]
    big = "{ b }" + " " * 60
    kept.keep(big, parse(big))
    assert kept.chars <= 100
    assert kept.get(big) is not None and kept.get(texts[1]) is None
    huge = "{ c }" + " " * 200
    kept.keep(huge, parse(huge))
    assert kept.get(huge) is None  # larger than the whole budget
