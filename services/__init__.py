"""Business rules. Nothing here knows HTTP or GraphQL: services raise services.errors."""
