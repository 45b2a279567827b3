"""BigQuery engine construction: credentials sources, typed errors, no secret in URLs.

The storage behaviour on BigQuery is the shared suite (``bigquery`` in tests/backends.py);
these tests cover only how an engine is made. The ones that run a query use the emulator.
"""

from __future__ import annotations

import base64
import json
import socket
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from dpone_state import (
    BackendMismatchError,
    BigQueryRunStateStorage,
    BigQueryXMinStateStorage,
    StateConfigError,
    StateCredentialsError,
    XMinState,
    XMinStateStorage,
    create_bigquery_engine,
    create_state_engine,
)
from dpone_state.bigquery import EMULATOR_HOST_ENV
from tests.backends import BACKENDS, BIGQUERY_EMULATOR, BIGQUERY_PROJECT, IN_CI
from tests.conftest import StateDB


@pytest.fixture
def no_google_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No emulator, no gcloud config, no metadata server: only what the test provides."""
    monkeypatch.delenv(EMULATOR_HOST_ENV, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing-key.json"))
    return tmp_path


def _service_account(token_uri: str = "https://oauth2.googleapis.com/token") -> dict[str, Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return {
        "type": "service_account",
        "project_id": "key-project",
        "private_key_id": "k1",
        "private_key": pem,
        "client_email": "state@key-project.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": token_uri,
    }


def test_missing_application_default_credentials_is_a_typed_error(no_google_env: Path) -> None:
    with pytest.raises(StateCredentialsError, match="GOOGLE_APPLICATION_CREDENTIALS") as info:
        create_state_engine("bigquery://some-project")
    assert "missing-key.json" in str(info.value)
    with pytest.raises(StateCredentialsError):
        create_bigquery_engine("some-project")


def test_missing_key_file_is_a_typed_error(no_google_env: Path) -> None:
    missing = no_google_env / "nope.json"
    with pytest.raises(StateCredentialsError, match="does not exist"):
        create_state_engine(f"bigquery://p?credentials_path={missing}")
    with pytest.raises(StateCredentialsError, match="does not exist"):
        create_bigquery_engine("p", credentials=missing)


def test_unusable_key_is_a_typed_error_that_shows_no_key_material(no_google_env: Path) -> None:
    broken = no_google_env / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(StateCredentialsError, match="not a usable service-account JSON"):
        create_bigquery_engine("p", credentials=broken)
    partial = {"type": "service_account", "private_key": "SECRET-KEY-MATERIAL"}
    with pytest.raises(StateCredentialsError) as info:
        create_bigquery_engine("p", credentials=partial)
    assert "SECRET-KEY-MATERIAL" not in str(info.value)
    with pytest.raises(StateCredentialsError, match="base64"):
        create_state_engine("bigquery://p?credentials_base64=%%%")


def test_service_account_file_dict_and_base64_make_engines_without_secrets_in_the_url(
    no_google_env: Path,
) -> None:
    info = _service_account()
    key_file = no_google_env / "key.json"
    key_file.write_text(json.dumps(info))
    encoded = base64.b64encode(json.dumps(info).encode()).decode()
    engines = [
        create_state_engine(f"bigquery://p?credentials_path={key_file}&location=EU"),
        create_state_engine(f"bigquery://p?credentials_base64={encoded}"),
        create_bigquery_engine("p", credentials=info),
        create_bigquery_engine(credentials=key_file),  # project from the key
    ]
    for engine in engines:
        assert "credentials" not in str(engine.url)
        assert engine.url.query["user_supplied_client"] == "true"
        assert "PRIVATE KEY" not in repr(XMinStateStorage(engine))
    assert engines[0].url.query["location"] == "EU"
    assert engines[-1].url.host == "key-project"


def test_client_and_credentials_together_are_refused() -> None:
    client = bigquery.Client(project="p", credentials=AnonymousCredentials())
    with pytest.raises(StateConfigError, match="not both"):
        create_bigquery_engine(client=client, credentials={"type": "service_account"})


def test_user_supplied_client_without_a_client_is_a_typed_error() -> None:
    engine = create_state_engine("bigquery://p?user_supplied_client=true")
    with pytest.raises(StateConfigError, match="no client"):
        XMinStateStorage(engine).load_state("s", "t")


def test_bigquery_classes_refuse_other_dialects(tmp_path: Path) -> None:
    engine = create_state_engine(f"sqlite:///{tmp_path / 's.db'}")
    for cls in (BigQueryXMinStateStorage, BigQueryRunStateStorage):
        with pytest.raises(BackendMismatchError, match="sqlite"):
            cls(engine)


@pytest.fixture
def emulator() -> str:
    """The emulator's endpoint, when the suite runs against it and it is up."""
    if BIGQUERY_PROJECT:
        pytest.skip("runs against the emulator only")
    parts = urlsplit(BIGQUERY_EMULATOR)
    try:
        socket.create_connection((parts.hostname, parts.port or 80), timeout=2).close()
    except OSError as error:
        message = f"no emulator at {BIGQUERY_EMULATOR}: {error}"
        if IN_CI:
            pytest.fail(f"required in CI: {message}", pytrace=False)
        pytest.skip(f"{message}; start it with scripts/services/bigquery-emulator.sh start")
    return BIGQUERY_EMULATOR


def test_refused_credentials_at_query_time_are_a_typed_error(
    no_google_env: Path, emulator: str
) -> None:
    # A well-formed key whose token endpoint refuses it (the emulator answers 404 there).
    info = _service_account(token_uri=f"{emulator}/token")
    engine = create_bigquery_engine("p", credentials=info, api_endpoint=emulator)
    storage = BigQueryXMinStateStorage(engine, schema="nowhere")
    with pytest.raises(StateCredentialsError, match="refused") as raised:
        storage.load_state("s", "t")
    assert "PRIVATE KEY" not in str(raised.value)


def test_emulator_host_variable_means_anonymous_credentials(
    no_google_env: Path, emulator: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(EMULATOR_HOST_ENV, emulator)
    engine = create_state_engine("bigquery://dpone-test")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT 1").scalar() == 1


def test_each_call_is_one_bigquery_api_request(emulator: str) -> None:
    """Stricter than test_statements on BigQuery: no dataset/table lookup besides the job."""
    from tests.test_statements import CALLS  # noqa: PLC0415

    client = bigquery.Client(
        project="dpone-test",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": emulator},
    )
    requests: list[str] = []
    send = client._http.request

    def counting(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        requests.append(f"{method} {url}")
        return send(method, url, *args, **kwargs)

    client._http.request = counting
    engine = create_bigquery_engine(client=client)
    db = StateDB(BACKENDS["bigquery"], engine, "", f"dpone_test_{uuid.uuid4().hex[:10]}")
    db.xmin().create_tables()
    db.runs().create_tables()
    try:
        for name, call in CALLS.items():
            db.xmin().delete_state("s", "t")
            db.xmin().save_state("s", "t", XMinState(1))  # revision 1 for the CAS update
            requests.clear()
            call(db)
            assert [r.split("?")[0].rsplit("/", 1)[-1] for r in requests] == ["queries"], name
    finally:
        client.delete_dataset(db.schema, delete_contents=True, not_found_ok=True)
