"""JSON request bodies nested deeper than Python's parser can go are malformed, not a 500."""

from __future__ import annotations

import pytest
from flask import Flask, request
from werkzeug.exceptions import BadRequest

DEEP = "[" * 100_000  # 100 KB, far inside MAX_CONTENT_LENGTH


def test_a_deeply_nested_json_body_is_malformed_json(app: Flask) -> None:
    with app.test_request_context(data=DEEP, content_type="application/json"):
        assert request.get_json(silent=True) is None
    with (
        app.test_request_context(data=DEEP, content_type="application/json"),
        pytest.raises(BadRequest),
    ):
        request.get_json()
    with app.test_request_context(data='{"der": [1, [2]]}', content_type="application/json"):
        assert request.get_json() == {"der": [1, [2]]}
