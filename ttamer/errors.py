"""Errors for bad input. Every one names the offending field as it appears in a file."""

from __future__ import annotations


class FieldError(ValueError):
    """Invalid input; ``field`` names the offending field, array or option."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")
