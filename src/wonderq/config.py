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
HOUR = 3600.0
DAY = 24 * HOUR
# ALLOWED_HOSTS: "*" (any), or host names / IP literals separated by commas, ".example.com" for its subdomains too
HOST_NAME = r"(\*|\.?[A-Za-z0-9_.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])"
HOST_LIST = rf"^({HOST_NAME}(,{HOST_NAME})*)?$"
# ALLOWED_ORIGINS: scheme://host[:port], separated by commas
ORIGIN = r"https?://([A-Za-z0-9_.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(:[0-9]{1,5})?"
ORIGIN_LIST = rf"^({ORIGIN}(,{ORIGIN})*)?$"
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
    sqs_allow_unsigned_payload: bool = False  # accept SigV4 requests signed with UNSIGNED-PAYLOAD

    # ---- who may do what, from where (docs/security.md) ----
    auth_file: Path | None = None  # the principals (TOML); without one, auth is off (loopback binds only)
    insecure: bool = False  # serve without auth on a non-loopback address (refused otherwise)
    allowed_hosts: Annotated[str, Field(pattern=HOST_LIST)] = ""  # Host names served; "": see docs/security.md
    allowed_origins: Annotated[str, Field(pattern=ORIGIN_LIST)] = ""  # other origins browsers may call from (CORS)
    session_ttl: Annotated[float, Field(gt=0, le=30 * DAY)] = 12 * HOUR  # seconds a dashboard sign-in lasts
    max_sessions: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000  # dashboard sign-ins kept; oldest go first

    # ---- how much: limits and overload (docs/security.md, Limits) ----
    rate_limit: Annotated[float, Field(ge=0)] = 2_000.0  # requests/s per principal (client address without auth)
    rate_burst: Annotated[int, Field(ge=1)] = 4_000  # requests a principal may make at once
    global_rate_limit: Annotated[float, Field(ge=0)] = 10_000.0  # requests/s for the whole server; 0: none
    global_rate_burst: Annotated[int, Field(ge=1)] = 20_000
    max_connections: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000  # open connections at once
    max_queues: Annotated[int, Field(ge=1, le=10_000_000)] = 10_000  # queues on this server
    max_queue_messages: Annotated[int, Field(ge=0)] = 1_000_000  # messages in one queue; 0: no limit
    max_long_polls: Annotated[int, Field(ge=0, le=1_000_000)] = 10_000  # receives waiting at once; 0: no long polls
    max_streams: Annotated[int, Field(ge=0, le=1_000_000)] = 1_000  # streaming (WebSocket) connections at once
    stream_buffer_bytes: Annotated[int, Field(ge=1024, le=1024 * MIB)] = 1 * MIB  # unsent frames per socket
    body_timeout: Annotated[float, Field(gt=0, le=3600)] = 30.0  # seconds to receive a whole request body
    # seconds a connection may sit idle between requests, and the most a request's headers may take to arrive
    # (hypercorn's keep-alive timer runs from the end of one reply, or the connect, until the next headers are whole)
    idle_timeout: Annotated[float, Field(gt=0, le=3600)] = 5.0
    inbox_timeout: Annotated[float, Field(gt=0, le=3600)] = 5.0  # seconds a request waits for the actor's inbox
    backlog: Annotated[int, Field(ge=1, le=65_535)] = 4_096  # listen backlog (the kernel caps it at somaxconn)
    graceful_timeout: Annotated[float, Field(ge=0, le=600)] = 5.0  # seconds requests in flight get at a shutdown
    reserve_bytes: Annotated[int, Field(ge=0)] = 64 * MIB  # disk kept free for acks on a full disk; 0: none

    # ---- over what channel: TLS (docs/security.md, TLS) ----
    certfile: Path | None = None  # PEM certificate chain; with keyfile, serve HTTPS (and HTTP/2)
    keyfile: Path | None = None
    ca_certs: Path | None = None  # PEM CA bundle that client certificates must chain to
    verify_client: bool = False  # require a client certificate signed by ca_certs

    @model_validator(mode="after")
    def _request_holds_a_message(self) -> Settings:
        if self.max_request_bytes < self.max_message_bytes:
            raise ValueError("MAX_REQUEST_BYTES must be at least MAX_MESSAGE_BYTES")
        return self

    @model_validator(mode="after")
    def _tls_is_whole(self) -> Settings:
        if (self.certfile is None) != (self.keyfile is None):
            raise ValueError("CERTFILE and KEYFILE go together: give both, or neither")
        if self.verify_client and self.ca_certs is None:
            raise ValueError("VERIFY_CLIENT needs CA_CERTS, the CA that client certificates must chain to")
        if self.ca_certs is not None and self.certfile is None:
            raise ValueError("CA_CERTS verifies client certificates over TLS: give CERTFILE and KEYFILE too")
        return self

    @property
    def tls(self) -> bool:
        return self.certfile is not None

    def host_names(self) -> tuple[str, ...]:
        """ALLOWED_HOSTS as a tuple (empty: the defaults of docs/security.md apply)."""
        return tuple(name.lower() for name in self.allowed_hosts.split(",") if name)

    def origins(self) -> tuple[str, ...]:
        """ALLOWED_ORIGINS as a tuple, lower-case."""
        return tuple(origin.lower() for origin in self.allowed_origins.split(",") if origin)

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
            max_queues=self.max_queues,
            max_queue_messages=self.max_queue_messages,
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
