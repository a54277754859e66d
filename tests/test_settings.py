"""How settings become connection parameters, and where embedded mode keeps its secrets."""

from __future__ import annotations

import stat
from concurrent.futures import ThreadPoolExecutor

import pytest

from settings import SECRETS_FILE, Settings


@pytest.mark.parametrize(
    ("url", "size", "effective"),
    [
        ("postgresql://k@db/kiln", 16, "postgres://k@db/kiln?maxsize=16"),
        ("postgres://k@db/kiln?ssl=true", 4, "postgres://k@db/kiln?ssl=true&maxsize=4"),
        ("postgres://k@db/kiln?maxsize=3", 16, "postgres://k@db/kiln?maxsize=3"),  # URL wins
    ],
)
def test_each_process_keeps_a_pool_of_the_configured_size(url, size, effective):
    settings = Settings(database_url=url, database_pool_size=size)
    assert settings.effective_database_url == effective


# --- Secrets: made once per data directory in embedded mode, never defaulted in production ---

PUBLIC_DEFAULTS = (
    "kiln-dev-secret-change-me-in-production",
    "kiln-dev-api-key-pepper-change-me-in-production",
)


def test_embedded_mode_makes_its_secrets_at_first_start_and_keeps_them(tmp_path):
    first = Settings(data_dir=tmp_path)
    assert first.jwt_secret not in PUBLIC_DEFAULTS and len(first.jwt_secret) >= 32
    assert first.api_key_pepper not in PUBLIC_DEFAULTS and len(first.api_key_pepper) >= 32
    assert first.jwt_secret != first.api_key_pepper
    kept = tmp_path / SECRETS_FILE
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    # A restart (or another command on the same data directory) reads the same ones, so
    # tokens and API keys survive it.
    again = Settings(data_dir=tmp_path)
    assert (again.jwt_secret, again.api_key_pepper) == (first.jwt_secret, first.api_key_pepper)
    # Another installation has its own.
    other = Settings(data_dir=tmp_path / "elsewhere")
    assert other.jwt_secret != first.jwt_secret
    assert other.api_key_pepper != first.api_key_pepper


def test_processes_starting_together_agree_on_one_pair_of_secrets(tmp_path):
    with ThreadPoolExecutor(max_workers=8) as pool:
        made = list(pool.map(lambda _: Settings(data_dir=tmp_path), range(16)))
    assert len({(s.jwt_secret, s.api_key_pepper) for s in made}) == 1


def test_a_configured_secret_wins_over_the_kept_one(tmp_path):
    strong = "k" * 40
    settings = Settings(data_dir=tmp_path, jwt_secret=strong)
    assert settings.jwt_secret == strong
    assert settings.api_key_pepper == Settings(data_dir=tmp_path).api_key_pepper


@pytest.mark.parametrize(
    "given",
    [
        {"database_url": "postgres://kiln@db/kiln"},
        {"redis_url": "redis://cache:6379/0"},
        {"database_url": "postgres://kiln@db/kiln", "redis_url": "redis://cache:6379/0"},
        {"environment": "production"},
    ],
)
def test_production_like_settings_get_no_made_up_secrets(tmp_path, given):
    settings = Settings(data_dir=tmp_path, **given)
    assert settings.production_like
    assert settings.jwt_secret == "" and settings.api_key_pepper == ""
    assert not (tmp_path / SECRETS_FILE).exists()


def test_a_damaged_secrets_file_stops_the_start(tmp_path):
    (tmp_path / SECRETS_FILE).write_text("{not json")
    with pytest.raises(ValueError, match=SECRETS_FILE):
        Settings(data_dir=tmp_path)


def test_a_secrets_file_others_could_read_is_closed_again(tmp_path):
    first = Settings(data_dir=tmp_path)
    kept = tmp_path / SECRETS_FILE
    kept.chmod(0o644)
    assert Settings(data_dir=tmp_path).jwt_secret == first.jwt_secret
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
