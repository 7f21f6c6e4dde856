"""The GraphQL surface: thin resolvers over the services, errors shaped per DESIGN.md."""
