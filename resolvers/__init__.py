"""Queries, mutations and subscriptions: authenticate, validate, call services, map errors."""
