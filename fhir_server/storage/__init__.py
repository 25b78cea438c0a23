"""Persistence: the ResourceStore protocol and one adapter per engine (SQLite, MongoDB)."""
