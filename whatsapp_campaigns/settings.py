"""Configuration from the environment (SPEC §6 Settings). One `Settings` object per process."""

from functools import lru_cache
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _split_csv(cls: object, value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    database_url: str = Field(
        "sqlite:///campaigns.db",
        validation_alias="CAMPAIGNS_DATABASE_URL",
        description="SQLAlchemy URL of the campaign store (SQLite file or PostgreSQL).",
    )
    temporal_address: str = Field("localhost:7233", validation_alias="TEMPORAL_ADDRESS")
    temporal_namespace: str = Field("default", validation_alias="TEMPORAL_NAMESPACE")
    task_queue: str = Field("campaigns", validation_alias="CAMPAIGNS_TASK_QUEUE")
    provider: Literal["sandbox", "cloud"] = Field("sandbox", validation_alias="CAMPAIGNS_PROVIDER")
    whatsapp_api_base_url: str = Field(
        "https://graph.facebook.com", validation_alias="WHATSAPP_API_BASE_URL"
    )
    whatsapp_api_version: str = Field("v21.0", validation_alias="WHATSAPP_API_VERSION")
    whatsapp_access_token: str = Field("", validation_alias="WHATSAPP_ACCESS_TOKEN")
    whatsapp_app_secret: str = Field("sandbox-app-secret", validation_alias="WHATSAPP_APP_SECRET")
    whatsapp_verify_token: str = Field(
        "sandbox-verify-token", validation_alias="WHATSAPP_VERIFY_TOKEN"
    )
    whatsapp_business_account_id: str = Field(
        "sandbox", validation_alias="WHATSAPP_BUSINESS_ACCOUNT_ID"
    )
    secret_key: SecretStr = Field(
        SecretStr(""),
        validation_alias="CAMPAIGNS_SECRET_KEY",
        description=(
            "Fernet key(s) that encrypt WhatsApp access tokens and app secrets in the store "
            "(comma-separated to rotate: the first encrypts). `campaigns accounts secret-key` "
            "makes one. Needed once an account is connected."
        ),
    )
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias="CAMPAIGNS_API_KEYS"
    )
    auth_max_failures: int = Field(
        10,
        ge=1,
        validation_alias="CAMPAIGNS_AUTH_MAX_FAILURES",
        description="Failed authentications per client address (or key id) before 429.",
    )
    auth_failure_window_seconds: float = Field(
        300.0,
        gt=0,
        validation_alias="CAMPAIGNS_AUTH_FAILURE_WINDOW_SECONDS",
        description="The window those failures are counted in; 429 lasts until it passes.",
    )
    default_region: str = Field(
        "US",
        validation_alias="CAMPAIGNS_DEFAULT_REGION",
        description="Region for phone numbers written without a + country code.",
    )
    default_account: str = Field("default", validation_alias="CAMPAIGNS_DEFAULT_ACCOUNT")
    send_mode: Literal["activity", "local_activity"] = Field(
        "activity",
        validation_alias="CAMPAIGNS_SEND_MODE",
        description=(
            "How each send runs: a regular activity on the sender's rate-limited task queue "
            "(the rate holds across workers), or a local activity (fewer history events, but "
            "no server-side rate limit). See bench/RESULTS.md."
        ),
    )
    reconcile_seconds: float = Field(
        30.0,
        gt=0,
        validation_alias="CAMPAIGNS_RECONCILE_SECONDS",
        description=(
            "How long a send whose outcome is unknown (worker crash, timeout) waits for its "
            "status webhook before it is sent again."
        ),
    )
    sender_refresh_seconds: float = Field(
        30.0,
        gt=0,
        validation_alias="CAMPAIGNS_SENDER_REFRESH_SECONDS",
        description=(
            "How often a worker re-reads the sender numbers: a number added, removed or "
            "re-rated is served (or dropped) within this long, without a restart."
        ),
    )
    server_rate_factor: float = Field(
        1.0,
        gt=0,
        le=1,
        validation_alias="CAMPAIGNS_SERVER_RATE_FACTOR",
        description=(
            "The rate the Temporal server holds a number's send queue to, as a fraction of "
            "the number's rate. The server lets an idle queue burst one second's worth; the "
            "sends of that burst wait in the workers for a second of the number with room "
            "(the store's per-second admission), so no second goes over the rate at 1.0 "
            "either; a lower factor only lowers the throughput (bench/RESULTS.md)."
        ),
    )
    template_cache_seconds: float = Field(
        60.0,
        ge=0,
        validation_alias="CAMPAIGNS_TEMPLATE_CACHE_SECONDS",
        description=(
            "How long a worker keeps a template it read from the store: a template WhatsApp "
            "paused pauses its campaigns at the next send after this long at the latest."
        ),
    )
    credits_per_message: int = Field(1, ge=0, validation_alias="CAMPAIGNS_CREDITS_PER_MESSAGE")
    worker_metrics_port: int | None = Field(
        None,
        validation_alias="CAMPAIGNS_WORKER_METRICS_PORT",
        description="Port on which a worker serves its business metrics (/metrics); off if unset.",
    )
    temporal_metrics_bind: str | None = Field(
        None,
        validation_alias="CAMPAIGNS_TEMPORAL_METRICS_BIND",
        description="host:port on which a worker serves the Temporal SDK's own Prometheus metrics.",
    )

    otlp_endpoint: str | None = Field(
        None,
        validation_alias=AliasChoices("CAMPAIGNS_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"),
        description=(
            "Base URL of an OTLP/HTTP collector (http://collector:4318): traces from the REST "
            "call through the workflow to the Graph API request. Tracing is off without it."
        ),
    )
    webhook_max_bytes: int = Field(
        1024 * 1024,
        gt=0,
        validation_alias="CAMPAIGNS_WEBHOOK_MAX_BYTES",
        description="Largest webhook body accepted; larger ones answer 413 unread.",
    )
    audience_max_bytes: int = Field(
        1024**3,
        gt=0,
        validation_alias="CAMPAIGNS_AUDIENCE_MAX_BYTES",
        description="Largest audience CSV upload accepted by the REST API (413 beyond).",
    )

    temporal_ui_url: str = Field(
        "http://localhost:8233",
        validation_alias="CAMPAIGNS_TEMPORAL_UI_URL",
        description="Base URL of the Temporal UI; the dashboard links each campaign's workflow.",
    )
    dashboard_secret: str = Field(
        "",
        validation_alias="CAMPAIGNS_DASHBOARD_SECRET",
        description=(
            "Signs the dashboard's session cookies. Empty: a random secret per process "
            "(sessions end when the API restarts; set it when several API replicas serve)."
        ),
    )

    # NoDecode keeps CAMPAIGNS_API_KEYS as the raw "key1,key2" string; split it here.
    _split_api_keys = field_validator("api_keys", mode="before")(_split_csv)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
