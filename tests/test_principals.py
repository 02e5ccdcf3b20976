"""The auth file, tokens and permissions (wonderq.principals), sessions (wonderq.sessions) and token buckets
(wonderq.ratelimit): pure, so every deadline is tested on both sides with explicit times."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers import write_auth_file
from wonderq.principals import (
    EVERYONE,
    Permission,
    Principals,
    PrincipalsError,
    hash_token,
    load_principals,
    new_token,
    parse_principals,
)
from wonderq.ratelimit import RateLimiter, TokenBucket, retry_after_header
from wonderq.sessions import Sessions

SEND, RECEIVE, ADMIN, MONITOR = Permission.SEND, Permission.RECEIVE, Permission.ADMIN, Permission.MONITOR


def one(**entry: Any) -> dict[str, Any]:
    token_hash = new_token()[1]
    return {"principals": [{"name": "p", "token_hashes": [token_hash], "permissions": {"*": ["send"]}, **entry}]}


def test_a_token_finds_its_principal_and_nothing_else(tmp_path: Path) -> None:
    tokens = write_auth_file(tmp_path / "auth.toml", {"a": {"jobs-*": ["send"]}, "b": {"*": ["monitor"]}})
    principals = load_principals(tmp_path / "auth.toml")
    assert len(principals) == 2
    found = principals.by_token(tokens["a"])
    assert found is not None
    assert found.name == "a"
    assert principals.by_token(tokens["b"]).name == "b"  # type: ignore[union-attr]
    assert principals.by_token(tokens["a"] + "x") is None
    assert principals.by_token("wq_00000000_" + "A" * 43) is None
    assert principals.by_token("") is None
    assert principals.by_token(tokens["a"].replace("wq_", "xx_")) is None


def test_the_file_holds_only_a_hash_of_the_token(tmp_path: Path) -> None:
    tokens = write_auth_file(tmp_path / "auth.toml", {"a": {"*": ["send"]}})
    text = (tmp_path / "auth.toml").read_text()
    assert tokens["a"] not in text
    assert tokens["a"].split("_")[2] not in text
    assert hash_token(tokens["a"]).hex() in text


def test_new_tokens_are_unguessable_and_distinct() -> None:
    made = {new_token()[0] for _ in range(200)}
    assert len(made) == 200
    assert all(len(token) == 55 for token in made)  # wq_ + 8 hex + _ + 43 characters: 256 random bits


def test_permissions_per_pattern() -> None:
    principals = parse_principals(
        {
            "principals": [
                {
                    "name": "svc",
                    "token_hashes": [new_token()[1]],
                    "permissions": {"orders": ["send", "receive"], "orders-*": ["admin"], "*": ["monitor"]},
                }
            ]
        }
    )
    principal = principals.named("svc")
    assert principal is not None
    assert principal.allows(SEND, "orders")
    assert not principal.allows(SEND, "orders-dead")
    assert principal.allows(ADMIN, "orders-dead")
    assert not principal.allows(ADMIN, "orders")
    assert principal.allows(MONITOR, "anything")
    assert principal.allows_everywhere(MONITOR)
    assert not principal.allows_everywhere(SEND)
    assert principal.allows_somewhere(RECEIVE)
    assert EVERYONE.allows_everywhere(ADMIN)


@pytest.mark.parametrize(
    ("document", "says"),
    [
        ({}, "no principals"),
        ({"principals": []}, "no principals"),
        ({"users": []}, "unknown top-level key"),
        (one(name="has space"), "name must be"),
        (one(role="x"), "unknown key 'role'"),
        (one(permissions={}), "permissions must be"),
        (one(permissions={"jobs": ["read"]}), "'read' is not a permission"),
        (one(permissions={"jobs": []}), "non-empty list"),
        (one(permissions={"jobs[0]": ["send"]}), "not a queue-name pattern"),
        (one(token_hashes=["plaintext-secret"]), "not of the form sha256"),
        (one(token_hashes=[]), "no way to sign in"),
        (one(sqs_access_key_id="AKIA"), "go together"),
        (one(sqs_access_key_id="AK-IA", sqs_secret_access_key="s"), "letters and digits"),
    ],
)
def test_bad_auth_files_are_refused_with_the_reason(document: dict[str, Any], says: str) -> None:
    with pytest.raises(PrincipalsError, match=says):
        parse_principals(document)


def test_a_name_or_a_key_used_twice_is_refused() -> None:
    token_hash = new_token()[1]
    twice = {"name": "p", "token_hashes": [new_token()[1]], "permissions": {"*": ["send"]}}
    with pytest.raises(PrincipalsError, match="defined twice"):
        parse_principals({"principals": [twice, twice]})
    shared = [{"name": n, "token_hashes": [token_hash], "permissions": {"*": ["send"]}} for n in ("a", "b")]
    with pytest.raises(PrincipalsError, match="used twice"):
        parse_principals({"principals": shared})


def test_an_unreadable_or_invalid_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PrincipalsError, match="cannot read"):
        load_principals(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("[[principals]\nname=")
    with pytest.raises(PrincipalsError, match="not a valid TOML"):
        load_principals(tmp_path / "bad.toml")


def test_sqs_keys_belong_to_principals(tmp_path: Path) -> None:
    write_auth_file(tmp_path / "auth.toml", {"a": {"q": ["send"]}}, {"a": ("AKIDA", "secret-a")})
    principals = load_principals(tmp_path / "auth.toml")
    key = principals.by_sqs_key("AKIDA")
    assert key is not None
    assert key.secret == "secret-a"
    assert key.principal.name == "a"
    assert principals.by_sqs_key("AKIDB") is None
    legacy = Principals.from_access_keys({"KEY": "SECRET"})
    found = legacy.by_sqs_key("KEY")
    assert found is not None
    assert found.principal.allows_everywhere(ADMIN)


# ---- sessions -------------------------------------------------------------------------------------------------


def test_a_session_lasts_its_ttl_and_no_longer() -> None:
    sessions = Sessions(ttl=60.0, max_sessions=10)
    session_id = sessions.start("a", now=100.0)
    assert sessions.find(session_id, now=159.999) == "a"
    assert sessions.find(session_id, now=160.0) is None
    assert sessions.find(session_id, now=100.0) is None  # forgotten once ended
    assert sessions.find("made-up", now=100.0) is None


def test_sessions_end_on_sign_out_and_the_oldest_go_first() -> None:
    sessions = Sessions(ttl=60.0, max_sessions=2)
    first, second = sessions.start("a", now=0.0), sessions.start("b", now=1.0)
    third = sessions.start("c", now=2.0)
    assert len(sessions) == 2
    assert sessions.find(first, now=3.0) is None
    assert sessions.find(second, now=3.0) == "b"
    sessions.end(third)
    assert sessions.find(third, now=3.0) is None


# ---- token buckets --------------------------------------------------------------------------------------------


def test_a_bucket_admits_its_burst_then_refills_at_its_rate() -> None:
    bucket = TokenBucket.full(rate=10.0, burst=5.0, now=0.0)
    assert [bucket.take(0.0) for _ in range(5)] == [0.0] * 5
    assert bucket.take(0.0) == pytest.approx(0.1)  # one token comes in 0.1 s
    assert bucket.take(0.0999) > 0
    assert bucket.take(0.1) == 0.0
    assert bucket.take(0.1) > 0
    assert bucket.take(10.0) == 0.0  # full again (never beyond the burst)
    assert [bucket.take(10.0) for _ in range(4)] == [0.0] * 4
    assert bucket.take(10.0) > 0


def test_a_rate_of_zero_is_no_limit() -> None:
    limiter = RateLimiter(0.0, 1, 0.0, 1)
    assert all(limiter.take("k", 0.0) == 0.0 and limiter.take_global(0.0) == 0.0 for _ in range(1000))
    assert limiter.keys() == 0


def test_keys_have_their_own_buckets_and_the_global_one_is_shared() -> None:
    limiter = RateLimiter(1.0, 2, 100.0, 3)
    assert limiter.take("a", 0.0) == limiter.take("a", 0.0) == 0.0
    assert limiter.take("a", 0.0) == pytest.approx(1.0)
    assert limiter.take("b", 0.0) == 0.0  # another key is not held back by a
    assert [limiter.take_global(0.0) for _ in range(3)] == [0.0] * 3
    assert limiter.take_global(0.0) == pytest.approx(0.01)


def test_full_buckets_are_forgotten_and_keys_are_bounded() -> None:
    limiter = RateLimiter(10.0, 10, max_keys=100)
    for number in range(1000):
        limiter.take(f"address:{number}", 0.0)
    assert limiter.keys() <= 100
    limiter.take("later", 60.0)  # a minute on, every earlier bucket has filled up again
    assert limiter.keys() == 1


@pytest.mark.parametrize(("seconds", "header"), [(0.001, "1"), (1.0, "1"), (1.2, "2"), (30.0, "30")])
def test_retry_after_is_whole_seconds_rounded_up(seconds: float, header: str) -> None:
    assert retry_after_header(seconds) == header
