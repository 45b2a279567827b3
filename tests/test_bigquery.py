"""BigQuery engine construction: credentials sources, typed errors, no secret in URLs.

The storage behaviour on BigQuery is the shared suite (``bigquery`` in tests/backends.py);
these tests cover only how an engine is made. The ones that run a query use the emulator.
"""

from __future__ import annotations

import base64
import json
import os
import random
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from dpone_state import (
    BackendMismatchError,
    BigQueryRunStateStorage,
    BigQueryXMinStateStorage,
    IncompatibleTableError,
    RevisionConflictError,
    StateConfigError,
    StateCredentialsError,
    StateNotProvisionedError,
    XMinState,
    XMinStateStorage,
    create_bigquery_engine,
    create_state_engine,
    migrate,
)
from dpone_state.bigquery import EMULATOR_HOST_ENV
from dpone_state.cli import main as cli_main
from dpone_state.dialects import BIGQUERY_RETRY, by_dialect
from dpone_state.failures import is_transient_conflict
from dpone_state.tables import lock_table
from tests.backends import (
    BACKENDS,
    BIGQUERY_EMULATOR,
    BIGQUERY_PROJECT,
    IN_CI,
    bigquery_client_of,
    create_dpone_bigquery_tables,
    recorded,
)
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
            with engine.begin() as conn:  # delete_state would leave a tombstone (revision < 0)
                conn.execute(sa.delete(db.xmin().table).where(sa.true()))
            db.xmin().save_state("s", "t", XMinState(1))  # revision 1 for the CAS update
            requests.clear()
            call(db)
            assert [r.split("?")[0].rsplit("/", 1)[-1] for r in requests] == ["queries"], name
    finally:
        client.delete_dataset(db.schema, delete_contents=True, not_found_ok=True)


# --- dpone's own BigQuery tables: adoption, first writes, doctor ------------------------------


@pytest.fixture
def legacy(emulator: str) -> Iterator[tuple[Any, str, str]]:
    """An emulator engine, a dataset holding dpone's own (unmigrated) state tables with one
    checkpoint written as dpone writes it, and the URL ``dpone-state`` reaches it with."""
    os.environ.setdefault(EMULATOR_HOST_ENV, emulator)
    client = bigquery.Client(
        project="dpone-test",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": emulator},
    )
    engine = create_bigquery_engine(client=client)
    dataset = f"dpone_test_{uuid.uuid4().hex[:10]}"
    create_dpone_bigquery_tables(engine, dataset)
    client.query_and_wait(
        f"INSERT INTO `{dataset}`.etl_xmin_state (source_schema, source_table, xmin_value, "
        "is_initial, wraparound_detected, frozen_xid, __dpone__loaded_at, __dpone__updated_at) "
        "VALUES ('public', 'orders', 7, FALSE, FALSE, NULL, CURRENT_TIMESTAMP(), "
        "CURRENT_TIMESTAMP())"
    )
    try:
        yield engine, dataset, "bigquery://dpone-test"
    finally:
        client.delete_dataset(dataset, delete_contents=True, not_found_ok=True)
        engine.dispose()


def test_unmigrated_dpone_tables_are_a_typed_error_naming_upgrade(
    legacy: tuple[Any, str, str],
) -> None:
    engine, dataset, _ = legacy
    xmin = XMinStateStorage(engine, schema=dataset)
    with pytest.raises(StateNotProvisionedError, match="dpone-state upgrade") as raised:
        xmin.load_state("public", "orders")
    assert raised.value.command is not None and "upgrade" in raised.value.command
    with pytest.raises(StateNotProvisionedError, match="dpone-state upgrade"):
        xmin.save_state("public", "orders", XMinState(8), expected_revision=0)


def test_upgrade_adopts_dpone_tables_and_keeps_their_rows(
    legacy: tuple[Any, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    engine, dataset, url = legacy
    options = ["--url", url, "--schema", dataset]
    assert cli_main([*options, "current", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["current"] is None
    assert cli_main([*options, "upgrade"]) == 0
    assert migrate.current(engine, schema=dataset) == migrate.head_revision()
    assert cli_main([*options, "upgrade"]) == 0  # again: nothing to do, nothing breaks
    xmin = XMinStateStorage(engine, schema=dataset)
    loaded = xmin.load_state("public", "orders")
    assert loaded is not None and (loaded.xmin_value, loaded.revision) == (7, 0)  # NULL -> 0
    xmin.save_state("public", "orders", XMinState(8), expected_revision=0)
    with pytest.raises(RevisionConflictError):
        xmin.save_state("public", "orders", XMinState(9), expected_revision=0)
    saved = xmin.load_state("public", "orders")
    assert saved is not None and (saved.xmin_value, saved.revision) == (8, 1)
    assert saved.timestamp == loaded.timestamp  # __dpone__loaded_at keeps dpone's first insert
    capsys.readouterr()
    assert cli_main([*options, "doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"], report["findings"]
    tables = [f for f in report["findings"] if f["check"].startswith("table ")]
    assert [f["status"] for f in tables] == ["ok", "ok"], tables
    assert all("not enforced" in f["detail"] for f in tables)


def test_doctor_reports_keys_held_by_two_rows(
    legacy: tuple[Any, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    engine, dataset, url = legacy
    migrate.upgrade(engine, schema=dataset)
    client = bigquery_client_of(engine)
    client.query_and_wait(  # what two unlocked first writers of one key leave behind
        f"INSERT INTO `{dataset}`.etl_xmin_state (source_schema, source_table, xmin_value) "
        "VALUES ('public', 'orders', 9)"
    )
    assert cli_main(["--url", url, "--schema", dataset, "doctor", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    problems = [f for f in report["findings"] if f["status"] == "problem"]
    assert len(problems) == 1 and "etl_xmin_state" in problems[0]["check"]
    assert "('public', 'orders')" in problems[0]["detail"]


def test_adoption_refuses_a_table_that_is_not_dpones_v1_shape(emulator: str) -> None:
    client = bigquery.Client(
        project="dpone-test",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": emulator},
    )
    engine = create_bigquery_engine(client=client)
    dataset = f"dpone_test_{uuid.uuid4().hex[:10]}"
    client.create_dataset(dataset)
    schema = [  # dpone's newer process-scoped run table is not the v1 shape
        bigquery.SchemaField("run_state_key", "BYTES", mode="REQUIRED"),
        bigquery.SchemaField("process_name", "STRING", mode="REQUIRED"),
        bigquery.SchemaField("dag_id", "STRING", mode="REQUIRED"),
    ]
    client.create_table(bigquery.Table(f"dpone-test.{dataset}.etl_run_state", schema=schema))
    try:
        with pytest.raises(IncompatibleTableError) as raised:
            migrate.upgrade(engine, schema=dataset)
        message = str(raised.value)
        assert "run_state_key" in message and "process_name is NOT NULL" in message
        assert "missing column(s)" in message and "execution_date" in message
        assert migrate.current(engine, schema=dataset) is None  # nothing recorded
    finally:
        client.delete_dataset(dataset, delete_contents=True, not_found_ok=True)


def test_datasets_are_created_in_the_clients_location_and_tables_clustered(
    emulator: str,
) -> None:
    client = bigquery.Client(
        project="dpone-test",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": emulator},
        location="EU",
    )
    engine = create_bigquery_engine(client=client)
    dataset = f"dpone_test_{uuid.uuid4().hex[:10]}"
    try:
        with recorded(engine) as statements:
            XMinStateStorage(engine, schema=dataset).create_tables()
        assert statements[0] == f"CREATE SCHEMA IF NOT EXISTS `{dataset}` OPTIONS(location='EU')"
        created = [sql for sql in statements if "CREATE TABLE" in sql]
        assert created[0].rstrip().endswith("CLUSTER BY `source_schema`, `source_table`")
    finally:
        client.delete_dataset(dataset, delete_contents=True, not_found_ok=True)


def test_first_writes_take_the_lock_row_in_one_transaction(emulator: str) -> None:
    """On BigQuery an insert does not conflict with a concurrent insert: a compare-and-set
    first write (``expected_revision=0``) updates the table's lock row in the same transaction,
    so of two concurrent ones BigQuery aborts one (retried: it then sees the other's row and
    raises RevisionConflictError). Other writes stay plain DML, which BigQuery queues."""
    client = bigquery.Client(
        project="dpone-test",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": emulator},
    )
    engine = create_bigquery_engine(client=client)
    dataset = f"dpone_test_{uuid.uuid4().hex[:10]}"
    xmin = XMinStateStorage(engine, schema=dataset)
    xmin.create_tables()
    try:
        with recorded(engine) as statements:
            xmin.save_state("s", "t", XMinState(1), expected_revision=0)
            xmin.save_state("s", "t", XMinState(2))
            xmin.save_states({("s", "u"): XMinState(3)})
            xmin.save_state("s", "t", XMinState(4), expected_revision=2)  # an UPDATE
            with pytest.raises(RevisionConflictError):
                xmin.save_state("s", "t", XMinState(5), expected_revision=0)
        for script in (statements[0], statements[4]):
            assert script.startswith("BEGIN TRANSACTION;\nUPDATE ")
            assert "`dpone_state_locks` SET `holds`" in script
            assert "revision conflict" in script
            assert script.rstrip().endswith("COMMIT TRANSACTION;")
        assert [sql.split()[0] for sql in statements[1:4]] == ["MERGE", "MERGE", "UPDATE"]
        loaded = xmin.load_state("s", "t")
        assert loaded is not None and (loaded.xmin_value, loaded.revision) == (4, 3)
        with engine.begin() as conn:  # a missing lock row is reported, not ignored
            lock = lock_table(sa.MetaData(), dataset)
            conn.execute(sa.delete(lock).where(lock.c.name == xmin.table_name))
        with pytest.raises(StateNotProvisionedError, match="lock row"):
            xmin.save_state("s", "v", XMinState(1), expected_revision=0)
    finally:
        client.delete_dataset(dataset, delete_contents=True, not_found_ok=True)


def test_retries_wait_like_bigquery_jobs() -> None:
    policy = by_dialect("bigquery").retry
    assert policy is BIGQUERY_RETRY
    delays = [policy.delay(n, random.Random(n)) for n in range(policy.write_attempts - 1)]
    assert 0.5 <= delays[0] <= 1.5  # about a second, jittered
    assert all(d <= policy.cap_seconds * (1 + policy.jitter) for d in delays)
    assert 30 <= sum(BIGQUERY_RETRY.base_seconds * 2**n for n in range(5)) <= 60
    assert by_dialect("postgresql").retry.delay(0) < 0.01  # row-locking servers: milliseconds
    for message in (
        "Too many DML statements outstanding against table p:d.t, limit is 20",
        "Could not serialize access to table p:d.t due to concurrent update",
        "Transaction is aborted due to concurrent update against table p:d.t",
    ):
        error = sa.exc.DBAPIError("MERGE", {}, Exception(message))
        assert is_transient_conflict(error, "bigquery"), message
    assert not is_transient_conflict(
        sa.exc.DBAPIError("x", {}, Exception("Syntax error")), "bigquery"
    )
