"""Settings from the environment or an optional `.env` file, named as in DESIGN.md.

Every component receives a `Settings` instance; nothing reads the environment on
its own. Without `ALN_SECRET_KEY`, the embedded default keeps a random key in a
file beside the SQLite database (mode 0600) and says so once.
"""

from __future__ import annotations

import logging
import os
import secrets
from functools import cached_property
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from dispatcher.errors import InvalidInput

log = logging.getLogger(__name__)

#: Name of the key file created beside an embedded database when no key is configured.
SECRET_KEY_FILENAME = ".aln-secret-key"
#: Default acknowledgement window when neither the alert nor the policy names one.
DEFAULT_ACK_WINDOW_SECONDS = 15 * 60


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    """Deployment settings; field names are the attribute names used across the code."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    database_url: str = Field("sqlite:///aln.db", validation_alias=_env("ALN_DATABASE_URL"))
    public_url: str = Field("http://127.0.0.1:8000", validation_alias=_env("ALN_PUBLIC_URL"))
    secret_key: str | None = Field(None, validation_alias=_env("ALN_SECRET_KEY"))
    #: Comma-separated keys being rotated away from: read, never written (`aln keys rotate`).
    previous_secret_keys: str | None = Field(
        None, validation_alias=_env("ALN_PREVIOUS_SECRET_KEYS"))
    config_dir: Path = Field(
        Path(__file__).resolve().parent.parent / "config", validation_alias=_env("ALN_CONFIG_DIR")
    )
    post: str | None = Field(None, validation_alias=_env("ALN_POST"))

    twilio_account_sid: str | None = Field(None, validation_alias=_env("TWILIO_ACCOUNT_SID"))
    twilio_auth_token: str | None = Field(None, validation_alias=_env("TWILIO_AUTH_TOKEN"))
    twilio_from_number: str | None = Field(None, validation_alias=_env("TWILIO_FROM_NUMBER"))
    twilio_messaging_service_sid: str | None = Field(
        None, validation_alias=_env("TWILIO_MESSAGING_SERVICE_SID")
    )
    twilio_api_url: str = Field(
        "https://api.twilio.com", validation_alias=_env("ALN_TWILIO_API_URL")
    )
    #: The WhatsApp sender approved in Twilio's console (`+E164`); unset, no WhatsApp.
    twilio_whatsapp_from: str | None = Field(
        None, validation_alias=_env("TWILIO_WHATSAPP_FROM"))
    whatsapp_rate_per_second: float = Field(
        20.0, validation_alias=_env("ALN_WHATSAPP_RATE_PER_SECOND"))
    sms_validity_seconds: int = Field(3600, validation_alias=_env("ALN_SMS_VALIDITY_SECONDS"))

    sendgrid_api_key: str | None = Field(None, validation_alias=_env("SENDGRID_API_KEY"))
    email_from: str | None = Field(None, validation_alias=_env("ALN_EMAIL_FROM"))
    sendgrid_api_url: str = Field(
        "https://api.sendgrid.com", validation_alias=_env("ALN_SENDGRID_API_URL")
    )
    sendgrid_webhook_public_key: str | None = Field(
        None, validation_alias=_env("ALN_SENDGRID_WEBHOOK_PUBLIC_KEY")
    )
    #: Oldest SendGrid event timestamp accepted, against replays.
    sendgrid_webhook_max_age_seconds: int = Field(
        600, validation_alias=_env("ALN_SENDGRID_WEBHOOK_MAX_AGE")
    )

    provider_timeout_seconds: float = Field(10.0, validation_alias=_env("ALN_PROVIDER_TIMEOUT"))
    retry_max_attempts: int = Field(5, validation_alias=_env("ALN_RETRY_MAX_ATTEMPTS"))
    retry_max_seconds: float = Field(60.0, validation_alias=_env("ALN_RETRY_MAX_SECONDS"))
    retry_min_wait: float = Field(0.5, validation_alias=_env("ALN_RETRY_MIN_WAIT"))
    retry_max_wait: float = Field(30.0, validation_alias=_env("ALN_RETRY_MAX_WAIT"))
    send_concurrency: int = Field(100, validation_alias=_env("ALN_SEND_CONCURRENCY"))
    #: Twilio sender throughput: 1/s US long code, ~10/s outside +1, 100/s short code.
    sms_rate_per_second: float = Field(10.0, validation_alias=_env("ALN_SMS_RATE_PER_SECOND"))
    email_rate_per_second: float = Field(100.0, validation_alias=_env("ALN_EMAIL_RATE_PER_SECOND"))
    #: Calls started per second (Twilio accounts start at 1 CPS) and seconds a call rings.
    call_rate_per_second: float = Field(1.0, validation_alias=_env("ALN_CALL_RATE_PER_SECOND"))
    call_timeout_seconds: int = Field(30, ge=5, le=600,
                                      validation_alias=_env("ALN_CALL_TIMEOUT_SECONDS"))

    default_ack_window_seconds: int = Field(
        DEFAULT_ACK_WINDOW_SECONDS, validation_alias=_env("ALN_ACK_WINDOW_SECONDS")
    )
    #: An alert to more volunteers than this is streamed: its first wave is written in
    #: chunks that are sent as they commit, so the first message leaves within a second.
    stream_above: int = Field(2000, ge=0, validation_alias=_env("ALN_STREAM_ABOVE"))
    #: How long a claimed delivery or deadline stays with one worker before another may take it.
    lease_seconds: float = Field(30.0, validation_alias=_env("ALN_LEASE_SECONDS"))
    #: Period of the scheduler's safety sweep for due work.
    sweep_seconds: float = Field(1.0, validation_alias=_env("ALN_SWEEP_SECONDS"))
    #: Lifetime of the acknowledgement link in emails.
    ack_link_max_age_seconds: int = Field(
        7 * 24 * 3600, validation_alias=_env("ALN_ACK_LINK_MAX_AGE")
    )

    #: Reverse proxies (addresses or networks, comma-separated) whose X-Forwarded-For is
    #: believed; by default none, and the peer address is the client's.
    trusted_proxies: str = Field("", validation_alias=_env("ALN_TRUSTED_PROXIES"))

    #: A bearer token /metrics requires; unset, /metrics is open (keep it on a private
    #: network then).
    metrics_token: str | None = Field(None, validation_alias=_env("ALN_METRICS_TOKEN"))
    #: `text` (default) or `json`: one JSON object per line on stdout and stderr.
    log_format: str = Field("text", validation_alias=_env("ALN_LOG_FORMAT"))
    #: Days personal data outlives its use: volunteers after their last term ends, the
    #: text of inbound messages after they arrive (`aln retention apply`, daily in the
    #: worker). 0 keeps everything.
    retention_days: int = Field(365, ge=0, validation_alias=_env("ALN_RETENTION_DAYS"))

    #: Where webhooks wait on local disk while the database cannot take them.
    spool_dir: Path | None = Field(None, validation_alias=_env("ALN_SPOOL_DIR"))

    def spool_path(self) -> Path:
        """`ALN_SPOOL_DIR`, else beside an embedded database file, else `.aln-spool`."""
        if self.spool_dir is not None:
            return self.spool_dir
        db_file = self.sqlite_path()
        if db_file is not None:
            return db_file.with_name(db_file.name + ".spool")
        return Path(".aln-spool")

    @property
    def configured_channels(self) -> list[str]:
        """Channels whose provider credentials are set, in preference order."""
        out = []
        if self.twilio_account_sid and self.twilio_auth_token and (
            self.twilio_from_number or self.twilio_messaging_service_sid
        ):
            out.append("sms")
        if self.twilio_account_sid and self.twilio_auth_token and self.twilio_whatsapp_from:
            out.append("whatsapp")
        if self.sendgrid_api_key and self.email_from:
            out.append("email")
        if self.twilio_account_sid and self.twilio_auth_token and self.twilio_from_number:
            out.append("voice")  # calls need a number; a Messaging Service cannot call
        return out

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def sqlite_path(self) -> Path | None:
        """The database file of an embedded SQLite URL, or None for other databases."""
        if not self.is_sqlite:
            return None
        raw = self.database_url.split("///", 1)[1] if "///" in self.database_url else ""
        if not raw or raw == ":memory:":
            return None
        return Path(raw.split("?", 1)[0])

    @cached_property
    def secret(self) -> bytes:
        """The master secret every derived key comes from."""
        if self.secret_key:
            return self.secret_key.encode()
        return _embedded_secret(self).encode()

    @property
    def previous_secrets(self) -> list[bytes]:
        """`ALN_PREVIOUS_SECRET_KEYS`, newest first as written, blanks ignored."""
        raw = self.previous_secret_keys or ""
        return [part.strip().encode() for part in raw.split(",") if part.strip()]


def _embedded_secret(settings: Settings) -> str:
    db_file = settings.sqlite_path()
    if db_file is None:
        raise InvalidInput(
            "ALN_SECRET_KEY is not set; it is required for databases other than a SQLite "
            "file (it encrypts contact details): set it, the same on every machine"
        )
    key_file = db_file.resolve().parent / SECRET_KEY_FILENAME
    if key_file.exists():
        return key_file.read_text().strip()
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    log.warning(
        "ALN_SECRET_KEY not set: created a random key in %s (mode 0600). "
        "Back it up: contact details cannot be read without it.",
        key_file,
    )
    return key


def get_settings(**overrides: object) -> Settings:
    """Settings from the environment, `.env`, and explicit overrides (used by tests)."""
    return Settings(**overrides)  # type: ignore[arg-type]
