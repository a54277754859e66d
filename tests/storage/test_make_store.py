from __future__ import annotations

from pathlib import Path

from settings import Settings
from storage import make_store
from storage.local import LocalStore
from storage.s3 import S3Store


def test_local_files_by_default(tmp_path: Path):
    store = make_store(Settings(data_dir=tmp_path, s3_bucket=""))
    assert isinstance(store, LocalStore) and store.root == (tmp_path / "media").resolve()


def test_an_s3_bucket_when_configured(tmp_path: Path):
    store = make_store(
        Settings(
            data_dir=tmp_path,
            s3_bucket="kiln-outputs",
            s3_prefix="prod/",
            s3_endpoint_url="http://127.0.0.1:9000",
            s3_access_key_id="AKIA-TEST",
            s3_secret_access_key="not-a-real-secret",
            s3_presign_seconds=600,
        )
    )
    assert isinstance(store, S3Store)
    url = store.url_for("u/g/0.png", "http://ignored")
    assert url.startswith("http://127.0.0.1:9000/kiln-outputs/prod/u/g/0.png?")
    assert "X-Amz-Expires=600" in url and "not-a-real-secret" not in url
