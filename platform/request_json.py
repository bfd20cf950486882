"""JSON request bodies: one nested deeper than the parser's recursion limit is malformed JSON.

Python's json raises RecursionError (not ValueError) for ``[[[[…`` nested some thousands deep, so
``request.get_json(silent=True)`` let it through as a 500 on every JSON endpoint. As a ValueError
it is what Flask already handles: ``None`` for ``silent=True``, 400 Bad Request otherwise.
"""

from __future__ import annotations

from typing import Any

from flask.json.provider import DefaultJSONProvider


class JSONProvider(DefaultJSONProvider):
    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return super().loads(s, **kwargs)
        except RecursionError as exc:
            raise ValueError("the JSON is nested too deeply") from exc
