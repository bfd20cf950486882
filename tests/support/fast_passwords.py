"""Test-only: the platform's password hashes at argon2id's lowest cost.

The platform hashes passwords with argon2-cffi's defaults (argon2id, 3 passes over 64 MiB, 4
lanes: ~60 ms on an idle machine and about a second on a loaded runner) on every seed, login,
one-time password and password change, thousands of times in the suite. The tests check what is
hashed, when and with which algorithm, not the cost, so for the session the two services that
hash swap their hashers for argon2id with 1 pass over 8 KiB and 1 lane: real argon2id hashes,
verified and rehashed the same way. ``PRODUCTION`` keeps the platform's own hasher, whose
parameters ``tests/platform/test_auth.py`` checks.

A platform started as a child process (scale-out, fault tests) keeps the real hasher: a cheap
hash stored by the test is verified there and then rehashed at the production cost, as a
deployment that raises the cost does.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from argon2 import PasswordHasher

from kyso.platform.auth import service as auth_service
from kyso.platform.users import service as users_service

PRODUCTION: PasswordHasher = auth_service._hasher
FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@pytest.fixture(scope="session", autouse=True)
def fast_password_hashes() -> Iterator[None]:
    saved = (auth_service._hasher, auth_service._DUMMY_HASH, users_service._hasher)
    auth_service._hasher = FAST
    auth_service._DUMMY_HASH = FAST.hash("not a password of anyone")
    users_service._hasher = FAST
    try:
        yield
    finally:
        auth_service._hasher, auth_service._DUMMY_HASH, users_service._hasher = saved
