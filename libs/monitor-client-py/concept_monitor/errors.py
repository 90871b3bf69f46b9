"""Typed errors of the SDK, with the same codes as the TypeScript CmError (libs/core)."""

from __future__ import annotations

from typing import Any, Mapping, Optional


class CmError(Exception):
    """An error with a code (INVALID_ARGUMENT, NOT_FOUND, CORRUPT, UNAVAILABLE, TIMEOUT,
    RESOURCE_EXHAUSTED, CONFIG, INTERNAL), context and a hint on what to do."""

    def __init__(
        self,
        code: str,
        message: str,
        context: Optional[Mapping[str, Any]] = None,
        hint: Optional[str] = None,
    ) -> None:
        self.code = code
        self.message = message
        self.context = dict(context or {})
        self.hint = hint
        text = f"{code}: {message}"
        if hint:
            text += f" (hint: {hint})"
        super().__init__(text)
