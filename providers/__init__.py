"""AI provider adapters and the registry that picks them for a model's routes."""
