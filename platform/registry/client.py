"""Talking to the National Population Database (CSDL quốc gia về dân cư).

The verification job depends only on ``PopulationRegistry``; ``HttpPopulationRegistry`` speaks
the JSON-over-HTTP protocol of README.md (served here by the reference service). A production
adapter for the real database implements the same Protocol and is chosen with the
``REGISTRY_ADAPTER`` setting (see ``load_registry``).
"""

from __future__ import annotations

import importlib
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, runtime_checkable

import httpx

from kyso.platform.ops.metrics import REGISTRY_ERRORS, REGISTRY_SECONDS
from kyso.platform.registry.protocol import (
    HEALTH_PATH,
    LOOKUP_PATH,
    MAX_BATCH,
    ProtocolViolation,
    RegistryCitizen,
    lookup_request,
    parse_lookup_response,
)

__all__ = [
    "HttpPopulationRegistry",
    "PopulationRegistry",
    "RegistryCitizen",
    "RegistryError",
    "RegistryProtocolError",
    "RegistryRefused",
    "RegistryUnavailable",
    "load_registry",
]

USER_AGENT = "kyso-platform/registry-client"
# An answer for MAX_BATCH citizens is well under 1 MB: a larger one is not the protocol, and is
# never held in memory whole. Compressed answers are refused (asked for with identity) so that
# the limit is on what is kept, not on what arrives.
MAX_RESPONSE_BYTES = 8 * 1024 * 1024


class RegistryError(Exception):
    """The registry could not answer a lookup."""


class RegistryUnavailable(RegistryError):
    """Down, overloaded, too slow or unreachable: try again later; nobody is verified.

    ``reason`` is short and stable ("timeout", "connection", "http_503", "rate_limited"), and
    ends up in the person's verification detail for IT.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class RegistryRefused(RegistryError):
    """The registry refused our credentials (HTTP 401/403): retrying will not help."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


class RegistryProtocolError(RegistryError):
    """The registry answered something that is not the protocol: a bug or a wrong URL."""


@runtime_checkable
class PopulationRegistry(Protocol):
    """Look up identity numbers in the population registry."""

    def lookup(self, identity_numbers: Sequence[str]) -> dict[str, RegistryCitizen | None]:
        """Each distinct number mapped to what the registry holds, or None if it holds nothing.

        Raises RegistryUnavailable, RegistryRefused or RegistryProtocolError; never answers
        for only part of the numbers.
        """
        ...


class HttpPopulationRegistry:
    """The protocol of README.md over HTTP(S), with connection reuse and strict timeouts."""

    def __init__(
        self,
        base_url: str,
        timeout: float = 10.0,
        *,
        api_key: str | None = None,
        max_batch: int = MAX_BATCH,
        retries: int = 1,
        verify: bool | str = True,
    ) -> None:
        if not 1 <= max_batch <= MAX_BATCH:
            raise ValueError(f"max_batch must be between 1 and {MAX_BATCH}")
        headers = {
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
            "Accept-Encoding": "identity",
        }
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.base_url = base_url.rstrip("/")
        self.max_batch = max_batch
        self.timeout = timeout
        # httpx retries only failed connection attempts: a request the registry may have
        # received is never sent twice behind our back.
        self._client = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            headers=headers,
            transport=httpx.HTTPTransport(retries=retries, verify=verify),
            follow_redirects=False,
        )

    def __enter__(self) -> HttpPopulationRegistry:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def health(self) -> dict[str, Any]:
        """The registry's health document (no credentials needed): {"status": "ok", ...}."""
        response = self._send("GET", HEALTH_PATH)
        body = self._json(response)
        if not isinstance(body, dict):
            raise RegistryProtocolError(f"{HEALTH_PATH} did not answer a JSON object")
        return body

    def lookup(self, identity_numbers: Sequence[str]) -> dict[str, RegistryCitizen | None]:
        numbers = list(dict.fromkeys(identity_numbers))
        answers: dict[str, RegistryCitizen | None] = {}
        for start in range(0, len(numbers), self.max_batch):
            chunk = numbers[start : start + self.max_batch]
            with _measured():
                response = self._send("POST", LOOKUP_PATH, json=lookup_request(chunk))
                try:
                    answers.update(parse_lookup_response(self._json(response), chunk))
                except ProtocolViolation as exc:
                    raise RegistryProtocolError(f"{LOOKUP_PATH}: {exc}") from exc
        return answers

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        request_id = str(uuid.uuid4())
        try:
            response = self._read(
                self._client.build_request(
                    method, path, headers={"X-Request-ID": request_id}, **kwargs
                )
            )
        except httpx.TimeoutException as exc:
            raise RegistryUnavailable(
                "timeout", f"{self.base_url}{path} did not answer in time ({exc})"
            ) from exc
        except httpx.TransportError as exc:
            raise RegistryUnavailable(
                "connection", f"cannot reach {self.base_url}{path} ({exc})"
            ) from exc
        status = response.status_code
        if status in (401, 403):
            raise RegistryRefused(
                status,
                f"{self.base_url} refused the API key (HTTP {status}, request {request_id}): "
                f"{_error_message(response)}",
            )
        if status == 429:
            raise RegistryUnavailable(
                "rate_limited", f"{self.base_url} asks to slow down (HTTP 429)"
            )
        if status >= 500:
            raise RegistryUnavailable(
                f"http_{status}",
                f"{self.base_url} failed (HTTP {status}, request {request_id}): "
                f"{_error_message(response)}",
            )
        if status != 200:
            raise RegistryProtocolError(
                f"{method} {self.base_url}{path} answered HTTP {status} "
                f"(request {request_id}): {_error_message(response)}"
            )
        return response

    def _read(self, request: httpx.Request) -> httpx.Response:
        """The response with its body, read up to MAX_RESPONSE_BYTES within the timeout (httpx's
        timeout bounds each read: a registry dribbling its answer would never stop)."""
        deadline = time.monotonic() + self.timeout
        streamed = self._client.send(request, stream=True)
        try:
            encoding = streamed.headers.get("content-encoding", "identity").strip().lower()
            if encoding != "identity":
                raise RegistryProtocolError(
                    f"{request.url} answered compressed ({encoding}) although asked not to"
                )
            body = bytearray()
            for chunk in streamed.iter_raw():
                body += chunk
                if len(body) > MAX_RESPONSE_BYTES:
                    raise RegistryProtocolError(
                        f"{request.url} answered more than {MAX_RESPONSE_BYTES} bytes: "
                        "not the registry protocol"
                    )
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout(
                        "the answer took longer than the timeout", request=request
                    )
        finally:
            streamed.close()
        return httpx.Response(
            streamed.status_code, headers=streamed.headers, content=bytes(body), request=request
        )

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        if not response.headers.get("content-type", "").startswith("application/json"):
            raise RegistryProtocolError(
                f"{response.request.url} answered {response.headers.get('content-type')!r}, "
                "not JSON: is REGISTRY_URL the registry's address?"
            )
        try:
            return response.json()
        except ValueError as exc:
            raise RegistryProtocolError(f"{response.request.url}: invalid JSON") from exc


@contextmanager
def _measured() -> Iterator[None]:
    """Times one lookup request (``kyso_registry_request_duration_seconds``) and counts its
    failure by kind (``kyso_registry_errors_total``: the unavailability's reason, ``refused``
    or ``protocol``)."""
    started = time.perf_counter()
    try:
        yield
    except RegistryUnavailable as exc:
        REGISTRY_ERRORS.labels(kind=exc.reason).inc()
        raise
    except RegistryRefused:
        REGISTRY_ERRORS.labels(kind="refused").inc()
        raise
    except RegistryProtocolError:
        REGISTRY_ERRORS.labels(kind="protocol").inc()
        raise
    finally:
        REGISTRY_SECONDS.observe(time.perf_counter() - started)


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
        message = body["error"]["message"]
        return str(message)[:200]
    except (ValueError, KeyError, TypeError):
        return response.text[:200] or response.reason_phrase


def load_registry(config: Mapping[str, Any], api_key: str | None) -> PopulationRegistry:
    """The registry the platform is configured to use.

    ``REGISTRY_ADAPTER`` ("package.module:factory") plugs in a production adapter: the factory
    receives the configuration and the API key and returns a PopulationRegistry. Without it the
    HTTP client talks to ``REGISTRY_URL``.
    """
    adapter = config.get("REGISTRY_ADAPTER")
    if adapter:
        module_name, _, attribute = str(adapter).partition(":")
        if not attribute:
            raise ValueError('REGISTRY_ADAPTER must look like "package.module:factory"')
        factory = getattr(importlib.import_module(module_name), attribute)
        registry = factory(config, api_key)
        if not isinstance(registry, PopulationRegistry):
            raise TypeError(f"{adapter} did not return a PopulationRegistry")
        return registry
    return HttpPopulationRegistry(
        str(config["REGISTRY_URL"]),
        timeout=float(config.get("REGISTRY_TIMEOUT", 10.0)),
        api_key=api_key,
        verify=config.get("REGISTRY_CA_BUNDLE") or True,
    )
