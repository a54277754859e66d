"""One Settings object, read from the environment (and an optional `.env` file).

With no settings at all Kiln runs embedded: SQLite under `./data/`, an in-process broker,
pub/sub hub and output store. Giving `DATABASE_URL` and `REDIS_URL` switches to production.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from functools import lru_cache
from pathlib import Path
from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Secrets every Kiln signed tokens and hashed API keys with before secrets were made per
# installation. They are public (source, README), so no process may start with them.
PUBLIC_SECRETS = frozenset(
    {
        "kiln-dev-secret-change-me-in-production",
        "kiln-dev-api-key-pepper-change-me-in-production",
    }
)
# Under DATA_DIR: the JWT secret and API key pepper embedded mode made at its first start.
SECRETS_FILE = "secrets.json"
MIN_SECRET_LENGTH = 32


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # Where embedded mode keeps its SQLite file and media.
    data_dir: Path = Path("data")
    # PostgreSQL (`postgres://user:pass@host:5432/db`); SQLite under data_dir when empty.
    database_url: str = ""
    # PostgreSQL connections each process keeps (unless DATABASE_URL sets ?maxsize=). Every
    # transaction holds one, so it caps a process's concurrent database work: Tortoise's
    # default of 5 queued requests and worker threads behind each other.
    database_pool_size: int = 16
    # Redis for the Dramatiq broker, pub/sub and shared counters; in-process when empty.
    redis_url: str = ""
    # Prefix of every Redis key, queue and channel Kiln uses: deployments (or test runs)
    # sharing one Redis need different ones.
    redis_namespace: str = "kiln"

    host: str = "127.0.0.1"
    port: int = 8000
    # Absolute base for output URLs (e.g. https://api.example.com); request-relative when empty.
    public_base_url: str = ""
    environment: str = Field(default="development", description="development | production")

    # Signs bearer tokens. Production-like settings must give one (32+ characters); embedded
    # mode makes a random one at first start and keeps it in DATA_DIR/secrets.json.
    jwt_secret: str = ""
    jwt_ttl_seconds: int = 7 * 24 * 3600
    signup_grant: int = 5

    # Worker threads started inside the server process in embedded mode.
    embedded_worker_threads: int = 4
    # Longest a worker's idle queue consumer waits between two looks at Redis. Dramatiq's
    # default (1 s) is also how late a due poll or an arriving job can start.
    worker_poll_ms: int = 100
    # Seconds the built-in local provider spends per progress step (3 steps per output).
    local_provider_delay: float = 0.3
    # The sweeper re-enqueues QUEUED generations older than this.
    requeue_after_seconds: float = 60.0
    sweep_interval_seconds: float = 15.0
    # A worker renews its lease on the step it runs every half of this; a step whose lease
    # lapsed (its worker died) is sent again and taken over by another worker.
    lease_seconds: float = 20.0
    # WebSocket clients must send connection_init within this many seconds.
    ws_init_timeout_seconds: float = 10.0
    max_subscriptions_per_connection: int = 20
    # Every API process re-checks the credentials of all its open sockets this often (one
    # batched query): a revoked key, a deleted account or a lost role ends their running
    # subscriptions within this (tokens are closed at their expiry, not on this beat).
    credential_check_interval_seconds: float = 2.0

    catalogue_path: Path | None = None

    # Stripe-format payment webhooks: the endpoint's signing secret(s), comma-separated
    # while rotating; signatures older than the tolerance are refused.
    payment_webhook_secret: str = ""
    payment_webhook_tolerance_seconds: int = 300
    # Credit packs sold through checkout (metadata.pack), as JSON in CREDIT_PACKS.
    credit_packs: dict[str, int] = {"starter": 100, "pro": 500, "premium": 3000}

    # Operations. Recording an error waits at most this long for the database; a slower write
    # finishes in the background instead of holding up the request.
    error_record_wait_seconds: float = 2.0
    # A generation that took longer than this (from queued to completed) notifies its owner.
    long_generation_notify_seconds: float = 30.0
    # Logs go to stderr as JSON lines ("json") or plain text ("text").
    log_format: str = "json"
    log_level: str = "INFO"
    # When set, GET /metrics requires `Authorization: Bearer <METRICS_TOKEN>`. Without it
    # /metrics is open when embedded and closed (401) when production-like, unless
    # METRICS_PUBLIC opens it (a scraper on a private network, or a balancer that hides it).
    metrics_token: str = ""
    metrics_public: bool = False

    # AI providers. Credentials and endpoints live here, never in the catalogue; a provider
    # without credentials is not configured and its routes are skipped.
    openai_api_key: str = ""
    openai_base_url: str = "https://api.openai.com/v1"
    gemini_api_key: str = ""
    gemini_base_url: str = "https://generativelanguage.googleapis.com/v1beta"
    replicate_api_token: str = ""
    replicate_base_url: str = "https://api.replicate.com/v1"
    replicate_webhook_secret: str = ""
    fal_key: str = ""
    fal_base_url: str = "https://queue.fal.run"
    fal_jwks_url: str = "https://rest.alpha.fal.ai/.well-known/jwks.json"
    stability_api_key: str = ""
    stability_base_url: str = "https://api.stability.ai"
    # Per provider, as JSON: {"replicate": {"max_concurrent": 5, "per_minute": 600}}.
    provider_limits: dict[str, dict[str, float]] = {}
    # Retries of one provider call (408/409/429/5xx, timeouts, connection errors).
    provider_retry_attempts: int = 3
    provider_retry_max_wait_seconds: float = 20.0
    # Circuit breakers: open after this many failures among at least `min_calls` calls in
    # the window, for the cooldown; then one probe call decides.
    breaker_failure_threshold: int = 5
    breaker_min_calls: int = 5
    breaker_window_seconds: float = 60.0
    breaker_cooldown_seconds: float = 30.0
    # Provider outputs downloaded into the store: size cap, and hosts exempt from the
    # private-address check (only for development and tests, e.g. "127.0.0.1").
    max_output_bytes: int = 50 * 1024 * 1024
    max_input_image_bytes: int = 10 * 1024 * 1024
    fetch_allow_hosts: str = ""
    # Those fetches (and input images) end within FETCH_DEADLINE_SECONDS, redirects and all;
    # once a body has been arriving for FETCH_RATE_GRACE_SECONDS it must average at least
    # FETCH_MIN_BYTES_PER_SECOND (0: no minimum). A server that drips a byte now and then
    # never trips a per-read timeout, and would otherwise hold a worker for as long as it likes.
    fetch_deadline_seconds: float = Field(default=30.0, gt=0)
    fetch_min_bytes_per_second: int = Field(default=8192, ge=0)
    fetch_rate_grace_seconds: float = Field(default=5.0, ge=0)

    # Output store: files under DATA_DIR/media (served at /media) unless S3_BUCKET is set,
    # then an S3-compatible bucket (AWS, MinIO, R2, ...).
    s3_bucket: str = ""
    s3_prefix: str = ""
    s3_endpoint_url: str = ""
    s3_region: str = "us-east-1"
    s3_access_key_id: str = ""
    s3_secret_access_key: str = ""
    # A CDN or public bucket URL; presigned GET URLs (valid S3_PRESIGN_SECONDS) when empty.
    s3_public_base_url: str = ""
    s3_presign_seconds: int = 3600

    # --- Security and abuse resistance (README: Security) ---
    # Server-side secret mixed into API key hashes (HMAC-SHA256): with it, a stolen copy of the
    # database alone cannot be used to check guessed keys. Given, made and kept like JWT_SECRET.
    api_key_pepper: str = ""
    max_api_keys_per_user: int = 20

    # Login protection: after this many failed logins for one email within the window,
    # further attempts are RATE_LIMITED, whatever the password.
    login_max_failures: int = 3
    login_failure_window_seconds: int = 900

    # Mutations and subscriptions per window: per user, per priority user, and per client IP
    # for anonymous callers (register, login). Each root field counts once.
    rate_limit_window_seconds: int = 60
    rate_limit_per_user: int = 120
    rate_limit_per_priority_user: int = 1200
    rate_limit_per_ip: int = 30
    # Queries per window, counted apart from the above with larger budgets (reads are
    # cheaper than changes, and a screen runs several): per user, per priority user and per
    # client IP for anonymous callers. Each root field counts once here too.
    query_rate_limit_per_user: int = 600
    query_rate_limit_per_priority_user: int = 6000
    query_rate_limit_per_ip: int = 300

    # GraphQL documents: depth, aliases, tokens and the HTTP body are capped; parsed and
    # validated documents are cached in bounded LRU caches.
    max_query_depth: int = 12
    max_query_aliases: int = 30
    # The costliest document within the token cap (2,000 copies of one leaf) costs about 30 µs
    # of CPU per token through parsing, validation and the limiters: at 1,000 tokens ~31 ms,
    # under the 50 ms an anonymous request may cost (2,000 tokens measured ~53 ms). GraphiQL's
    # introspection query is 183 tokens; an app with larger documents raises it knowingly.
    max_query_tokens: int = 1000
    max_body_bytes: int = 1024 * 1024
    # Most objects an operation's result may hold in the worst case (every page full, every
    # list at its bound: schema/document_limits.py), checked before anything runs.
    max_result_objects: int = 2000
    graphql_cache_size: int = 256
    # The fast path (fastpath/): prepared operations, root fields completed by projections,
    # subscriptions handed off to the WebSocket transport. Off: plain Strawberry throughout
    # (the same responses, more CPU), e.g. to rule it out when something looks wrong.
    fast_path_enabled: bool = True
    # Total text of the documents kept parsed and validated: the cache's memory, and the work
    # of every full garbage collection, stay bounded whatever documents callers invent.
    graphql_cache_chars: int = 256 * 1024
    # Automatic Persisted Queries (web/persisted_queries.py): anyone may register a document,
    # so the store keeps at most this many (the least recently used forgotten first) of at most
    # this many bytes each (longer ones run but are not kept): 1000 x 16 KiB, 16 MiB at worst,
    # in Redis (shared by every API process) or in memory when embedded.
    persisted_query_max_entries: int = 1000
    persisted_query_max_bytes: int = 16 * 1024
    # A GET of a persisted query without credentials whose answer has no errors may be cached
    # by browsers and CDNs for this long (`Cache-Control: public, max-age=...`); 0: never.
    persisted_query_cache_seconds: int = 60
    # Introspection and GraphiQL (switch both off in production if the schema is private).
    # GraphiQL left unset is on when embedded and off when production-like: a page that runs
    # any operation typed into it has no business on a public API by default.
    introspection_enabled: bool = True
    graphiql_enabled: bool | None = None
    # Origins allowed to call the API from a browser, comma-separated ("*" for any); empty: no
    # CORS headers at all (same-origin and non-browser clients only).
    cors_allow_origins: str = ""

    # Addresses (or networks, "10.0.0.0/8") of the proxies in front of Kiln whose
    # X-Forwarded-For and X-Forwarded-Proto are believed; comma-separated. Empty: no one's, and
    # the client is the peer of the connection. Rate limits key on that client, so trusting a
    # header from anyone else would let a caller pick a fresh address for every request.
    trusted_proxies: str = ""
    # What a request head may be: its header block's bytes and number of headers (431 beyond),
    # and how long a connection may take to send it (closed with 408 after, so connections that
    # never finish their headers cannot pile up: slowloris).
    max_header_bytes: int = 32 * 1024
    max_headers: int = 100
    header_timeout_seconds: float = 10.0
    # Rejected webhooks (bad signature or body) one client address may send per
    # RATE_LIMIT_WINDOW_SECONDS; past it, its webhooks are answered 429 unread and unrecorded.
    webhook_rejections_per_ip: int = 10

    @model_validator(mode="after")
    def _resolve_defaults(self) -> Self:
        """Fills in what depends on the run mode, once, so every reader of these settings (the
        API, the workers, manage.py, services.auth, services.api_keys) sees the same values."""
        if not self.production_like and not (self.jwt_secret and self.api_key_pepper):
            kept = embedded_secrets(self.data_dir)
            self.jwt_secret = self.jwt_secret or kept["jwt_secret"]
            self.api_key_pepper = self.api_key_pepper or kept["api_key_pepper"]
        if self.graphiql_enabled is None:
            self.graphiql_enabled = not self.production_like
        return self

    @property
    def production_like(self) -> bool:
        """Shared PostgreSQL or Redis (or ENVIRONMENT=production): other people reach this
        deployment, so it must be given its secrets and starts with production defaults,
        whatever ENVIRONMENT says."""
        return bool(self.database_url or self.redis_url) or self.environment == "production"

    @property
    def trusted_proxy_list(self) -> list[str]:
        return [p.strip() for p in self.trusted_proxies.split(",") if p.strip()]

    @property
    def cors_origins(self) -> list[str]:
        return [o.strip() for o in self.cors_allow_origins.split(",") if o.strip()]

    @property
    def payment_webhook_secrets(self) -> list[str]:
        return [s.strip() for s in self.payment_webhook_secret.split(",") if s.strip()]

    @property
    def embedded(self) -> bool:
        """No Redis: broker, worker threads and pub/sub all live inside the server process."""
        return not self.redis_url

    @property
    def migrate_on_start(self) -> bool:
        """Embedded SQLite migrates itself; PostgreSQL is migrated as a deploy step."""
        return not self.database_url

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            url = self.database_url
            # Tortoise names its asyncpg engine `postgres`; accept the common spellings.
            for alias in ("postgresql+asyncpg://", "postgresql://"):
                if url.startswith(alias):
                    url = "postgres://" + url[len(alias) :]
            if url.startswith("postgres://") and "maxsize=" not in url:
                url += f"{'&' if '?' in url else '?'}maxsize={self.database_pool_size}"
            return url
        return f"sqlite://{(self.data_dir / 'kiln.sqlite3').resolve()}"

    @property
    def media_dir(self) -> Path:
        return (self.data_dir / "media").resolve()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def startup_problems(settings: Settings) -> list[str]:
    """Why a process (API, worker) must not start with `settings`: a secret that is public,
    or, when production-like, missing or shorter than 32 characters."""
    problems = []
    for name, value in (
        ("JWT_SECRET", settings.jwt_secret),
        ("API_KEY_PEPPER", settings.api_key_pepper),
    ):
        if value in PUBLIC_SECRETS:
            problems.append(f"{name} is a value published with Kiln; set a secret of your own")
        elif settings.production_like and len(value) < MIN_SECRET_LENGTH:
            problems.append(
                f"{name} is {'not set' if not value else 'too short'}: production (a database "
                f"or Redis URL, or ENVIRONMENT=production) needs {MIN_SECRET_LENGTH}+ characters"
            )
    return problems


def refuse_to_start(settings: Settings, what: str) -> None:
    """SystemExit naming every problem, for the API and the workers alike."""
    if problems := startup_problems(settings):
        raise SystemExit(f"Refusing to start the {what}: " + "; ".join(problems) + ".")


def embedded_secrets(data_dir: Path) -> dict[str, str]:
    """The JWT secret and API key pepper of an embedded installation: made at random at its
    first start and kept in DATA_DIR/secrets.json (mode 0600), so tokens and API keys survive
    restarts. Processes starting together agree: the file appears whole, once (a hard link of
    a finished file, which fails if another process got there first)."""
    path = data_dir / SECRETS_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fresh = {
            "jwt_secret": secrets.token_urlsafe(48),
            "api_key_pepper": secrets.token_urlsafe(48),
        }
        draft = data_dir / f".{SECRETS_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "w") as file:
                json.dump(fresh, file)
                file.flush()
                os.fsync(file.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(draft, path)
        finally:
            draft.unlink()
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        path.chmod(0o600)  # readable by others (copied, restored from a backup): close it
    try:
        kept = json.loads(path.read_text())
        if not all(
            isinstance(kept.get(key), str) and len(kept[key]) >= MIN_SECRET_LENGTH
            for key in ("jwt_secret", "api_key_pepper")
        ):
            raise ValueError("a secret is missing or too short")
    except ValueError as error:
        raise ValueError(
            f"{path} is damaged ({error}). Delete it to make new secrets (tokens and API keys "
            "made with the old ones stop working), or set JWT_SECRET and API_KEY_PEPPER."
        ) from error
    return {"jwt_secret": kept["jwt_secret"], "api_key_pepper": kept["api_key_pepper"]}
