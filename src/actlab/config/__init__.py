"""Config schema and resolvers."""
