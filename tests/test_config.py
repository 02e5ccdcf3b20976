"""Settings: flags over environment over `.env` over defaults, and clear errors for bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from wonderq.config import ConfigError, Settings, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults() -> None:
    settings = load_settings()
    assert (settings.host, settings.port, settings.default_processing_time) == ("127.0.0.1", 3000, 10.0)
    assert (settings.max_message_bytes, settings.max_batch, settings.tick_interval) == (1024 * 1024, 100, 0.1)
    assert settings.limits().default_visibility_timeout == 10.0


def test_flags_beat_environment_beat_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("PORT=4000\nMAX_BATCH=7\nDEFAULT_PROCESSING_TIME=3\n")
    monkeypatch.setenv("PORT", "5000")
    settings = load_settings(port=6000, max_batch=None)
    assert settings.port == 6000  # flag
    settings = load_settings()
    assert settings.port == 5000  # environment over .env
    assert settings.max_batch == 7  # .env
    assert settings.default_processing_time == 3


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"port": 70000}, "PORT"),
        ({"default_processing_time": 0}, "DEFAULT_PROCESSING_TIME"),
        ({"default_processing_time": 43201}, "DEFAULT_PROCESSING_TIME"),
        ({"max_message_bytes": 0}, "MAX_MESSAGE_BYTES"),
        ({"max_batch": 1001}, "MAX_BATCH"),
        ({"tick_interval": 0}, "TICK_INTERVAL"),
        ({"max_message_bytes": 4096, "max_request_bytes": 2048}, "MAX_REQUEST_BYTES must be at least"),
        ({"sqs_account_id": "12345"}, "SQS_ACCOUNT_ID"),
        ({"sqs_account_id": "12345678901a"}, "SQS_ACCOUNT_ID"),
        ({"sqs_region": "EU-West-1"}, "SQS_REGION"),
        ({"sqs_region": ""}, "SQS_REGION"),
        ({"sqs_access_keys": "nosecret"}, "SQS_ACCESS_KEYS"),
        ({"sqs_access_keys": "KEY:a b"}, "SQS_ACCESS_KEYS"),
        ({"sqs_access_keys": "KEY:s,"}, "SQS_ACCESS_KEYS"),
    ],
)
def test_invalid_settings_name_the_setting(overrides: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(**overrides)


def test_sqs_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (load_settings().sqs_account_id, load_settings().sqs_region) == ("123456789012", "us-east-1")
    monkeypatch.setenv("SQS_ACCOUNT_ID", "000000000000")
    monkeypatch.setenv("SQS_REGION", "eu-west-1")
    assert (load_settings().sqs_account_id, load_settings().sqs_region) == ("000000000000", "eu-west-1")
    assert load_settings().access_keys() == {}
    monkeypatch.setenv("SQS_ACCESS_KEYS", "AKID1:se/cr+et,AKID2:other")
    assert load_settings().access_keys() == {"AKID1": "se/cr+et", "AKID2": "other"}
    assert "se/cr+et" not in repr(load_settings())  # secrets stay out of logs


def test_invalid_environment_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "abc")
    with pytest.raises(ConfigError, match=r"PORT.*'abc'"):
        load_settings()


@pytest.mark.parametrize(
    ("environment", "in_memory"),
    [({}, False), ({"MEMORY": "true"}, True), ({"DATA_DIR": ":memory:"}, True), ({"DATA_DIR": "/srv/q"}, False)],
)
def test_memory_mode_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], in_memory: bool
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.in_memory is in_memory
    assert (settings.sync, settings.max_store_bytes, settings.compact_interval) == ("full", 0, 60.0)


def test_durability_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="SYNC"):
        load_settings(sync="sometimes")
    with pytest.raises(ConfigError, match="MAX_STORE_BYTES"):
        load_settings(max_store_bytes=-1)
    with pytest.raises(ConfigError, match="COMPACT_INTERVAL"):
        load_settings(compact_interval=0)
