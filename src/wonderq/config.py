"""Settings: from command-line flags, then environment variables, then a `.env` file, then defaults.

Validated once at start-up; an invalid value stops the server with a message naming the setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from wonderq.core import MAX_VISIBILITY_TIMEOUT, Limits

MIB = 1024 * 1024
KEY_PAIR = r"[A-Za-z0-9]{1,128}:[^,:\s]{1,128}"  # an access key id and its secret
KEY_PAIRS = rf"^({KEY_PAIR}(,{KEY_PAIR})*)?$"


class ConfigError(Exception):
    """Raised for invalid settings; its message lists every bad setting by its environment variable name."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 3000  # 0 picks a free port
    default_processing_time: Annotated[float, Field(gt=0, le=MAX_VISIBILITY_TIMEOUT)] = 10.0  # seconds
    max_message_bytes: Annotated[int, Field(ge=1, le=64 * MIB)] = 1 * MIB
    max_batch: Annotated[int, Field(ge=1, le=1000)] = 100  # messages per batch send / receive / ack
    max_request_bytes: Annotated[int, Field(ge=1024, le=1024 * MIB)] = 10 * MIB  # any request body
    tick_interval: Annotated[float, Field(gt=0, le=60)] = 0.1  # seconds between lease-expiry sweeps
    data_dir: Path = Path("wonderq-data")  # relative to the working directory; ":memory:" means `memory`
    memory: bool = False  # keep everything in memory only: nothing survives a restart
    sync: Literal["full", "normal"] = "full"  # fsync the journal at every commit, or only at checkpoints
    max_store_bytes: Annotated[int, Field(ge=0)] = 0  # the journal refuses writes past this size; 0: no limit
    compact_interval: Annotated[float, Field(gt=0, le=86_400)] = 60.0  # seconds between journal compactions
    sqs_account_id: Annotated[str, Field(pattern=r"^\d{12}$")] = "123456789012"  # the one account of queue URLs
    sqs_region: Annotated[str, Field(pattern=r"^[a-z0-9-]{1,40}$")] = "us-east-1"  # its queues are API v1's
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"  # one line per record; json: one object per line
    # "KEY:SECRET,KEY:SECRET": when given, SQS requests must be signed (SigV4) with one of these keys
    sqs_access_keys: Annotated[str, Field(pattern=KEY_PAIRS, repr=False)] = ""

    @model_validator(mode="after")
    def _request_holds_a_message(self) -> Settings:
        if self.max_request_bytes < self.max_message_bytes:
            raise ValueError("MAX_REQUEST_BYTES must be at least MAX_MESSAGE_BYTES")
        return self

    @property
    def in_memory(self) -> bool:
        return self.memory or str(self.data_dir) == ":memory:"

    def access_keys(self) -> dict[str, str]:
        """SQS_ACCESS_KEYS as access key id -> secret key."""
        return dict(pair.split(":", 1) for pair in self.sqs_access_keys.split(",") if pair)

    def limits(self) -> Limits:
        return Limits(
            max_message_bytes=self.max_message_bytes,
            max_batch=self.max_batch,
            default_visibility_timeout=self.default_processing_time,
        )


def load_settings(**overrides: Any) -> Settings:
    """Settings with `overrides` (flags; None means not given) on top of environment, `.env` and defaults."""
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as error:
        problems = []
        for item in error.errors(include_url=False):
            if item["loc"]:
                where = "_".join(str(part) for part in item["loc"]).upper()
                problems.append(f"{where}: {item['msg']} (got {item.get('input')!r})")
            else:  # a rule across settings: its message names them
                problems.append(item["msg"].removeprefix("Value error, "))
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems)) from None
