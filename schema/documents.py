"""Parsed and validated documents: Kiln's validator, and the caches that spare a document seen
before its parsing and validation.

Only documents that validated are kept. A refused document is not worth keeping (a client
that sent it gets the same refusal after parsing it again), and keeping every document a
caller invents fills memory with their syntax trees: a full cache of large documents is
millions of objects, which every full garbage collection of the process then walks (over a
second, during which nothing else runs). What is kept is bounded in number and in total text.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

from graphql import ASTValidationRule, DocumentNode, GraphQLError, GraphQLSchema, parse, validate
from graphql.validation import OverlappingFieldsCanBeMergedRule
from strawberry.extensions import ParserCache, ValidationCache
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule

from fastpath.internals import graphql_schema
from schema.document_limits import limit_errors
from schema.field_merging import FieldsCanMergeRule
from settings import Settings


class ValidDocuments:
    """Documents that validated, by their text: at most `maxsize` of them and `max_chars` of
    text in all, the least recently used forgotten first."""

    def __init__(self, maxsize: int, max_chars: int) -> None:
        self.maxsize = maxsize
        self.max_chars = max_chars
        self.chars = 0
        self._documents: OrderedDict[str, DocumentNode] = OrderedDict()

    def get(self, text: str) -> DocumentNode | None:
        document = self._documents.get(text)
        if document is not None:
            self._documents.move_to_end(text)
        return document

    def keep(self, text: str, document: DocumentNode) -> None:
        if text in self._documents or len(text) > self.max_chars:
            return
        self._documents[text] = document
        self.chars += len(text)
        while len(self._documents) > self.maxsize or self.chars > self.max_chars:
            oldest, _ = self._documents.popitem(last=False)
            self.chars -= len(oldest)


class DocumentValidator:
    """Validates documents for Strawberry's ValidationCache:
    - the depth and alias limits first, in linear time (a document over them is not validated
      further: it is refused, whatever else is wrong with it);
    - then graphql-core's rules (and Strawberry's) with OverlappingFieldsCanBeMergedRule,
      quadratic in repeated fields, replaced by schema/field_merging.py's linear one;
    - without "Did you mean ...?" suggestions when introspection is off: they would list the
      schema's names to a caller who may not read it.

    Valid documents are remembered by object (ValidDocuments hands out the same object for the
    same text), not by value: hashing a parsed document walks all of it, which cost several
    milliseconds per request for a large one."""

    def __init__(self, settings: Settings) -> None:
        self.max_depth = settings.max_query_depth
        self.max_aliases = settings.max_query_aliases
        self.hide_suggestions = not settings.introspection_enabled
        self.maxsize = settings.graphql_cache_size
        self.hits = self.misses = 0
        self._valid: OrderedDict[int, _Valid] = OrderedDict()

    def validate(
        self,
        schema: GraphQLSchema,
        document: DocumentNode,
        rules: tuple[type[ASTValidationRule], ...],
    ) -> list[GraphQLError]:
        key = id(document)
        known = self._valid.get(key)
        if (
            known is not None
            and known.document is document
            and known.schema is schema
            and known.rules == rules
        ):
            self._valid.move_to_end(key)
            self.hits += 1
            return []
        self.misses += 1
        errors = self._validate(schema, document, rules)
        if not errors:
            # The entry holds the document, so its id cannot be reused while it is kept.
            self._valid[key] = _Valid(document, schema, rules)
            if len(self._valid) > self.maxsize:
                self._valid.popitem(last=False)
        return errors

    def _validate(
        self,
        schema: GraphQLSchema,
        document: DocumentNode,
        rules: tuple[type[ASTValidationRule], ...],
    ) -> list[GraphQLError]:
        errors = limit_errors(document, self.max_depth, self.max_aliases)
        if errors:
            return errors
        kept = tuple(rule for rule in rules if rule is not OverlappingFieldsCanBeMergedRule)
        return validate(
            schema,
            document,
            (*kept, FieldsCanMergeRule, MaybeNullValidationRule, OneOfInputValidationRule),
            hide_suggestions=self.hide_suggestions,
        )


@dataclass(frozen=True, slots=True)
class _Valid:
    document: DocumentNode
    schema: GraphQLSchema
    rules: tuple[type[ASTValidationRule], ...]


class DocumentParsing(ParserCache):
    """Strawberry's ParserCache, answering from the valid documents (a new text is parsed)."""

    def __init__(self, documents: ValidDocuments) -> None:
        super().__init__()
        self.documents = documents

    def on_parse(self) -> Iterator[None]:
        execution = self.execution_context
        text = execution.query or ""
        known = self.documents.get(text)
        execution.graphql_document = known or parse(text, **execution.parse_options)
        yield


class DocumentValidation(ValidationCache):
    """Strawberry's ValidationCache with Kiln's validator; a document that validated is kept
    for DocumentParsing."""

    def __init__(self, validator: DocumentValidator, documents: ValidDocuments) -> None:
        super().__init__()
        self.validator = validator
        self.documents = documents

    def on_validate(self) -> Iterator[None]:
        execution = self.execution_context
        document = execution.graphql_document
        assert document is not None
        errors = self.validator.validate(
            graphql_schema(execution.schema), document, execution.validation_rules
        )
        execution.pre_execution_errors = errors
        if not errors and execution.query:
            self.documents.keep(execution.query, document)
        yield
