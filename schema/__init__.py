"""The GraphQL schema: Strawberry types, inputs, enums, permissions and the typed Context.
`schema.build.build_schema()` assembles it from the resolvers."""
