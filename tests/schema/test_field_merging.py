"""The linear field-merging rule decides as graphql-core's OverlappingFieldsCanBeMergedRule:
the same documents valid, the same refused (messages may differ), on a schema with interfaces
and unions (where parents can be exclusive) and on Kiln's."""

from __future__ import annotations

from typing import Any

import pytest
from graphql import build_schema, parse, validate
from graphql.validation import OverlappingFieldsCanBeMergedRule
from hypothesis import given, settings
from hypothesis import strategies as st

from schema.field_merging import WORK_LIMIT, FieldsCanMergeRule
from tests.support.schema import SCHEMA

PETS = build_schema(
    """
    interface Pet { name: String }
    enum DogCommand { SIT HEEL DOWN }
    type Dog implements Pet {
      name: String
      nickname: String
      barkVolume: Int
      doesKnowCommand(dogCommand: DogCommand): Boolean
      friend: Pet
      friends: [Pet]
    }
    type Cat implements Pet {
      name: String
      nickname: String
      meowVolume: Int
      meows: Boolean
      friend: Pet
      friends: [Pet!]
    }
    union CatOrDog = Cat | Dog
    interface SomeBox { deepBox: SomeBox unrelatedField: String }
    type StringBox implements SomeBox {
      scalar: String
      deepBox: StringBox
      unrelatedField: String
      listStringBox: [StringBox]
      stringBox: StringBox
      intBox: IntBox
    }
    type IntBox implements SomeBox {
      scalar: Int
      deepBox: IntBox
      unrelatedField: String
      listStringBox: [StringBox]
      stringBox: StringBox
      intBox: IntBox
    }
    type NonNullStringBox implements SomeBox {
      scalar: String!
      deepBox: SomeBox
      unrelatedField: String
    }
    type Query {
      dog: Dog
      cat: Cat
      pet: Pet
      catOrDog: CatOrDog
      someBox: SomeBox
      dogs(first: Int): [Dog]
    }
    """
)


def verdicts(schema: Any, document: str) -> tuple[bool, bool]:
    parsed = parse(document)
    theirs = validate(schema, parsed, [OverlappingFieldsCanBeMergedRule])
    ours = validate(schema, parsed, [FieldsCanMergeRule])
    return bool(theirs), bool(ours)


CASES = [
    # valid
    "{ dog { name nickname } }",
    "{ dog { name name } }",
    "{ dog { doesKnowCommand(dogCommand: SIT) doesKnowCommand(dogCommand: SIT) } }",
    "{ dog { ... on Dog { x: name } } cat { ... on Cat { x: meows } } }",
    "{ catOrDog { ... on Dog { x: name } ... on Cat { x: nickname } } }",
    "{ catOrDog { ... on Dog { x: doesKnowCommand(dogCommand: SIT) } ... on Cat { x: meows } } }",
    "{ someBox { ... on IntBox { box: stringBox { scalar } }"
    " ... on StringBox { box: stringBox { scalar } } } }",
    "{ dog { ...A ...A ...B } } fragment A on Dog { name } fragment B on Dog { name ...A }",
    "{ someBox { ... on IntBox { deepBox { unrelatedField } }"
    " ... on StringBox { deepBox { unrelatedField } } } }",
    "query($a: DogCommand) { dog { doesKnowCommand(dogCommand: $a) "
    "doesKnowCommand(dogCommand: $a) } }",
    "{ dog { friend { name } friend { nickname: name } } }",
    # invalid
    "{ dog { doesKnowCommand(dogCommand: SIT) doesKnowCommand(dogCommand: HEEL) } }",
    "{ dog { doesKnowCommand doesKnowCommand(dogCommand: HEEL) } }",
    "query($a: DogCommand, $b: DogCommand) { dog { doesKnowCommand(dogCommand: $a)"
    " doesKnowCommand(dogCommand: $b) } }",
    "{ dog { name: nickname name } }",
    "{ dog { name } dog: cat { name } }",
    "{ catOrDog { ... on Dog { x: barkVolume } ... on Cat { x: name } } }",
    "{ dog { x: name } dog { x: nickname } }",
    "{ dog { ...A ...B } } fragment A on Dog { x: name } fragment B on Dog { x: barkVolume }",
    "{ pet { ... on Pet { x: name } ... on Dog { x: nickname } } }",
    "{ someBox { ... on IntBox { scalar } ... on StringBox { scalar } } }",
    "{ someBox { ... on NonNullStringBox { scalar } ... on StringBox { scalar } } }",
    "{ someBox { ... on IntBox { box: listStringBox { scalar } }"
    " ... on StringBox { box: stringBox { scalar } } } }",
    "{ someBox { ... on IntBox { deepBox { scalar } } ... on StringBox { deepBox { scalar } } } }",
    "{ dog { friends { name } } cat { friends { name } } catOrDog { ... on Dog { f: friends"
    " { name } } ... on Cat { f: friends { name } } } }",
    "{ dog { friend { ... on Dog { x: name } } friend { ... on Dog { x: barkVolume } } } }",
    "{ dogs(first: 1) { name } dogs(first: 2) { name } }",
    "{ dog { name } ... on Query { dog { name: nickname } } }",
]


@pytest.mark.parametrize("document", CASES)
def test_the_same_verdict_as_graphql_core(document):
    theirs, ours = verdicts(PETS, document)
    assert ours == theirs


def test_conflicts_are_explained_as_graphql_core_explains_them():
    [error] = validate(PETS, parse("{ dog { name: nickname name } }"), [FieldsCanMergeRule])
    assert error.message == (
        "Fields 'name' conflict because 'nickname' and 'name' are different fields."
        " Use different aliases on the fields to fetch both if this was intentional."
    )
    assert len(error.nodes or ()) == 2


# Random selections over the pet schema, with few response names so that they collide often.
FIELDS = {
    "Dog": ["name", "nickname", "barkVolume", "doesKnowCommand", "friend", "friends"],
    "Cat": ["name", "nickname", "meowVolume", "meows", "friend", "friends"],
    "Pet": ["name"],
}
OBJECTS = {"friend", "friends"}


@st.composite
def selection(draw: Any, on: str, depth: int = 0) -> str:
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["field", "field", "inline"]))
        if kind == "inline" and depth < 2:
            target = draw(st.sampled_from(["Dog", "Cat", "Pet"] if on == "Pet" else [on, "Pet"]))
            parts.append(f"... on {target} {{ {draw(selection(target, depth + 1))} }}")
            continue
        field = draw(st.sampled_from(FIELDS[on]))
        alias = draw(st.sampled_from(["", "a: ", "b: "]))
        arguments = ""
        if field == "doesKnowCommand":
            arguments = draw(st.sampled_from(["", "(dogCommand: SIT)", "(dogCommand: HEEL)"]))
        below = ""
        if field in OBJECTS:
            below = "{ name }" if depth >= 2 else f"{{ {draw(selection('Pet', depth + 1))} }}"
        elif draw(st.booleans()) and depth < 2:
            continue
        parts.append(f"{alias}{field}{arguments} {below}")
    return " ".join(parts) or "name"


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["dog", "cat", "pet"]), st.sampled_from(["", "x: "])),
        min_size=1,
        max_size=3,
    ),
    st.data(),
)
def test_random_collisions_get_the_same_verdict(roots, data):
    types = {"dog": "Dog", "cat": "Cat", "pet": "Pet"}
    body = " ".join(
        f"{alias}{root} {{ {data.draw(selection(types[root]))} }}" for root, alias in roots
    )
    theirs, ours = verdicts(PETS, f"{{ {body} }}")
    assert ours == theirs, body


def test_kilns_own_queries_merge_as_before():
    documents = [
        "{ generations { edges { node { id outputs { url } }"
        " node { status outputs { width } } } } }",
        "{ generations { edges { node { id } } } generations(first: 5) { edges { cursor } } }",
        "{ me { id } me { email } a: me { id } }",
        '{ a: generation(id: "1") { id } a: generation(id: "2") { id } }',
    ]
    for document in documents:
        theirs, ours = verdicts(SCHEMA._schema, document)
        assert ours == theirs, document


def test_a_document_past_the_work_limit_is_refused_as_too_complex():
    # Every field of the group is collected again below each of the aliased roots.
    many = " ".join(["id"] * (WORK_LIMIT // 10))
    roots = " ".join(f"r{i}: me {{ {many} }}" for i in range(12))
    errors = validate(SCHEMA._schema, parse(f"{{ {roots} }}"), [FieldsCanMergeRule])
    assert [e.message for e in errors] == [
        "The document is too complex to validate: it selects the same fields too many times."
        " Select each field once."
    ]
