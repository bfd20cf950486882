"""The sans-I/O message layer: every malformed input is a ProtocolError with a stable code."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kyso.agent import i18n
from kyso.agent.protocol import (
    FORBIDDEN_FIELDS,
    Cancel,
    ErrorCode,
    Hello,
    ListCertificates,
    ProtocolError,
    Sign,
    Signatures,
    negotiate,
    parse_request,
    serialize,
    serialize_utf8,
)
from kyso.agent.token.model import Algorithm

DIGEST = bytes(range(32))


def sign_message(**over: object) -> dict[str, object]:
    message: dict[str, object] = {
        "type": "sign",
        "id": "s1",
        "manifest": "a.b.c",
        "certificate": "ab" * 32,
        "algorithm": "ECDSA_SHA256",
        "digests": [base64.b64encode(DIGEST).decode()],
    }
    message.update(over)
    return message


def code_of(message: object, **kw: int) -> ErrorCode:
    text = message if isinstance(message, str) else json.dumps(message)
    with pytest.raises(ProtocolError) as info:
        parse_request(text, **kw)
    return info.value.code


def test_parses_each_request_type() -> None:
    assert parse_request('{"type":"hello","id":"h1","versions":[1]}') == Hello("h1", (1,))
    assert parse_request('{"type":"list_certificates","id":"c"}') == ListCertificates("c")
    assert parse_request('{"type":"cancel","id":"x","target":"s1"}') == Cancel("x", "s1")
    request = parse_request(json.dumps(sign_message()))
    assert isinstance(request, Sign)
    assert request.digests == (DIGEST,)
    assert request.algorithm is Algorithm.ECDSA_SHA256


@pytest.mark.parametrize("field", sorted(FORBIDDEN_FIELDS))
def test_forbidden_fields_are_refused_by_name(field: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_request(json.dumps(sign_message(**{field: "/tmp/evil.so"})))
    assert info.value.code is ErrorCode.FIELD_NOT_ALLOWED
    assert info.value.detail == {"field": field}


@pytest.mark.parametrize("kind", ["openUrl", "exec", "install", "setConfig", "loadModule", "", 5])
def test_unknown_types_are_refused(kind: object) -> None:
    assert code_of({"type": kind, "id": "a"}) is ErrorCode.UNKNOWN_TYPE


def test_unknown_field_is_refused() -> None:
    assert code_of({"type": "hello", "id": "a", "versions": [1], "x": 1}) is (
        ErrorCode.FIELD_NOT_ALLOWED
    )


@pytest.mark.parametrize(
    "request_id", ['x","status":"ok', "", "a" * 65, "a b", "é", 5, None, "a\n"]
)
def test_invalid_ids_are_never_echoed(request_id: object) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_request(json.dumps({"type": "hello", "id": request_id, "versions": [1]}))
    reply = json.loads(serialize(info.value.reply()))
    assert reply["code"] == "BAD_ID"
    assert reply["id"] is None


@pytest.mark.parametrize("size", [0, 16, 31, 33, 48, 64])
def test_digests_must_be_32_bytes(size: int) -> None:
    digest = base64.b64encode(bytes(size)).decode()
    assert code_of(sign_message(digests=[digest])) is ErrorCode.DIGEST_INVALID


def test_non_canonical_base64_is_refused() -> None:
    good = base64.b64encode(DIGEST).decode()
    assert code_of(sign_message(digests=[good.rstrip("=")])) is ErrorCode.DIGEST_INVALID
    assert code_of(sign_message(digests=[good[:-2] + "B="])) is ErrorCode.DIGEST_INVALID
    assert code_of(sign_message(digests=[good.replace("A", "-")])) is ErrorCode.DIGEST_INVALID


def test_digests_that_join_well_but_split_badly_are_refused_at_their_index() -> None:
    """The joined check of all digests must not let two wrong lengths make up for each other."""
    good = base64.b64encode(DIGEST).decode()
    short, long = good[:-1], "=" + good  # 43 + 45 characters that join into two good ones
    message = sign_message(digests=[good, short, long, good])
    with pytest.raises(ProtocolError) as info:
        parse_request(json.dumps(message))
    assert info.value.code is ErrorCode.DIGEST_INVALID
    assert info.value.detail == {"index": 1}
    ok = sign_message(digests=[good, base64.b64encode(bytes(32)).decode()])
    parsed = parse_request(json.dumps(ok))
    assert isinstance(parsed, Sign)
    assert parsed.digests == (DIGEST, bytes(32))


@settings(max_examples=300, deadline=None)
@given(
    request_id=st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
    offset=st.integers(min_value=0, max_value=3000),
    signatures=st.lists(st.binary(min_size=0, max_size=600), max_size=120),
    total=st.integers(min_value=0, max_value=3000),
)
def test_a_chunk_of_signatures_is_the_json_encoders_text(
    request_id: str, offset: int, signatures: list[bytes], total: int
) -> None:
    """The chunk's own encoder (the hot reply) writes exactly what the JSON encoder would."""
    chunk = Signatures(request_id, offset, tuple(signatures), total)
    generic = json.dumps(chunk.to_wire(), ensure_ascii=False, separators=(",", ":"))
    assert chunk.to_json() == generic
    assert serialize(chunk) == generic
    assert chunk.to_utf8() == serialize_utf8(chunk) == generic.encode("utf-8")


@pytest.mark.parametrize("algorithm", ["MD5", "SHA1", "NONE", "RSA_X_509", "ECDSA_SHA512", 1])
def test_weak_or_unknown_algorithms_are_refused(algorithm: object) -> None:
    assert code_of(sign_message(algorithm=algorithm)) is ErrorCode.ALGORITHM_UNSUPPORTED


def test_batch_cap() -> None:
    digests = [base64.b64encode(DIGEST).decode()] * 11
    assert code_of(sign_message(digests=digests), batch_cap=10) is ErrorCode.BATCH_TOO_LARGE
    assert isinstance(
        parse_request(json.dumps(sign_message(digests=digests[:10])), batch_cap=10), Sign
    )


@pytest.mark.parametrize(
    "text",
    ["", "null", "[]", '"hello"', "{", "1e999999", "[" * 100_000 + "]" * 100_000, "\ud800"],
)
def test_garbage_is_bad_message(text: str) -> None:
    assert code_of(text) in {ErrorCode.BAD_MESSAGE, ErrorCode.BAD_ID}


def test_missing_field_is_bad_message() -> None:
    assert code_of({"type": "hello", "id": "a"}) is ErrorCode.BAD_MESSAGE


def test_version_negotiation() -> None:
    assert negotiate([1, 2, 3]) == 1
    assert negotiate([2]) is None


def test_every_error_code_has_texts_in_both_languages() -> None:
    for code in ErrorCode:
        text = i18n.text(f"errors.{code.lower()}")
        assert text.vi
        assert text.en
        assert text.vi != text.en


def test_catalogue_entries_have_matching_placeholders() -> None:
    import string

    for key, entry in i18n.catalogue().items():
        names = [
            {f for _, f, _, _ in string.Formatter().parse(s) if f} for s in (entry.vi, entry.en)
        ]
        assert names[0] == names[1], key


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=300))
def test_fuzz_arbitrary_text_only_raises_protocol_errors(text: str) -> None:
    try:
        parse_request(text)
    except ProtocolError as exc:
        json.loads(serialize(exc.reply()))


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "type",
                "id",
                "versions",
                "manifest",
                "certificate",
                "algorithm",
                "digests",
                "target",
                "pin",
            ]
        ),
        json_values | st.sampled_from(["hello", "sign", "cancel", "list_certificates", "h1"]),
    )
)
def test_fuzz_structured_requests_only_raise_protocol_errors(message: dict[str, object]) -> None:
    try:
        parse_request(json.dumps(message))
    except ProtocolError as exc:
        reply = json.loads(serialize(exc.reply()))
        assert reply["type"] == "error"
        assert reply["code"] in ErrorCode.__members__


def test_protocol_md_states_the_connection_time_bounds() -> None:
    """The close codes, reasons and bounds the server uses are the ones the contract names."""
    from kyso.agent import server
    from kyso.agent.config import DEFAULT_HELLO_TIMEOUT_SECONDS, DEFAULT_IDLE_TIMEOUT_SECONDS

    doc = (Path(__file__).resolve().parents[2] / "protocol.md").read_text(encoding="utf-8")
    for code, reason in (
        (server.CLOSE_NO_HELLO, server.REASON_NO_HELLO),
        (server.CLOSE_IDLE, server.REASON_IDLE),
    ):
        assert f"**{code}**, reason `{reason}`" in doc
    assert f"**{DEFAULT_HELLO_TIMEOUT_SECONDS:g} seconds**" in doc
    assert f"**{DEFAULT_IDLE_TIMEOUT_SECONDS:g} seconds**" in doc
