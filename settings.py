"""One Settings object, read from the environment (and an optional `.env` file).

With no settings at all Kiln runs embedded: SQLite under `./data/`, an in-process broker,
pub/sub hub and output store. Giving `DATABASE_URL` and `REDIS_URL` switches to production.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_JWT_SECRET = "kiln-dev-secret-change-me-in-production"
DEFAULT_API_KEY_PEPPER = "kiln-dev-api-key-pepper-change-me-in-production"


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

    jwt_secret: str = DEFAULT_JWT_SECRET
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
    # WebSocket clients must send connection_init within this many seconds.
    ws_init_timeout_seconds: float = 10.0
    max_subscriptions_per_connection: int = 20

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
    # When set, GET /metrics requires `Authorization: Bearer <METRICS_TOKEN>`.
    metrics_token: str = ""

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
    # Server-side secret mixed into API key hashes (HMAC-SHA256). Set it in production: with it,
    # a stolen copy of the database alone cannot be used to check guessed keys.
    api_key_pepper: str = DEFAULT_API_KEY_PEPPER
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
    max_query_tokens: int = 2000
    max_body_bytes: int = 1024 * 1024
    # Most objects an operation's result may hold in the worst case (every page full, every
    # list at its bound: schema/document_limits.py), checked before anything runs.
    max_result_objects: int = 2000
    graphql_cache_size: int = 256
    # Total text of the documents kept parsed and validated: the cache's memory, and the work
    # of every full garbage collection, stay bounded whatever documents callers invent.
    graphql_cache_chars: int = 256 * 1024
    # Introspection and GraphiQL (switch both off in production if the schema is private).
    introspection_enabled: bool = True
    graphiql_enabled: bool = True
    # Origins allowed to call the API from a browser, comma-separated ("*" for any); empty: no
    # CORS headers at all (same-origin and non-browser clients only).
    cors_allow_origins: str = ""

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


def production_problems(settings: Settings) -> list[str]:
    """Why `settings` must not run in production: secrets left at their development defaults."""
    problems = []
    if settings.jwt_secret == DEFAULT_JWT_SECRET or len(settings.jwt_secret) < 32:
        problems.append("JWT_SECRET is the development default or shorter than 32 characters")
    if settings.api_key_pepper == DEFAULT_API_KEY_PEPPER or len(settings.api_key_pepper) < 32:
        problems.append("API_KEY_PEPPER is the development default or shorter than 32 characters")
    return problems
