"""graphql-files: a self-hosted GraphQL server for records that carry files."""

__version__ = "0.1.0"
