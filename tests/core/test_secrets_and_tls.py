"""Secrets the container way and TLS to PostgreSQL.

A secret (``DATABASE_URL``, ``SMTP_PASSWORD``) may come from the file ``<VARIABLE>_FILE`` names,
as Docker and Kubernetes mount secrets; a problem with that file stops the process with one line
naming the variable, never the secret. TLS is set in the URL (``sslmode=verify-full`` and
``sslrootcert``) and is tried against a throwaway cluster with ``ssl=on``, a certificate signed
by a CA made for the test, and a pg_hba.conf that accepts TCP clients only over TLS, with a
password.
"""

import asyncio
import shutil
import signal
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from helpers import Proc, http_ok, run_script, wait_until
from queue_core.db import create_pool
from queue_core.jobs import NewJob
from queue_core.migrate import upgrade
from queue_core.queue import Queue
from queue_core.settings import load_settings
from queue_core.states import JobStatus
from queue_devtools.pgcluster import PgCluster, PostgresNotFoundError, free_port
from queue_worker.settings import SmtpSettings, WorkerSettings

# Markers that must never show in an error line or a log line.
PASSWORD = "pw-6d1e0b7f-secret"  # noqa: S105 - a marker, the test cluster's
# Spaces at both ends: only the final newline is removed.
SMTP_PASSWORD = " smtp 3c9a-secret "  # noqa: S105 - a marker
SECRET_VARIABLES = ("DATABASE_URL", "DATABASE_URL_FILE", "SMTP_PASSWORD", "SMTP_PASSWORD_FILE")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _make_ca(directory: Path, name: str) -> None:
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip


def _make_server_cert(directory: Path, ca: str) -> None:
    """A certificate for the host name ``localhost`` only (not the address 127.0.0.1)."""
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost",
        cwd=directory,
    )  # fmt: skip
    (directory / "server.ext").write_text(
        "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n"
    )
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "server.ext",
        cwd=directory,
    )  # fmt: skip


@dataclass(frozen=True)
class TlsServer:
    cluster: PgCluster
    ca: Path  # signed the server's certificate
    other_ca: Path  # a CA the server has nothing to do with

    def url(self, dbname: str, *, host: str = "localhost", ca: Path | None = None) -> str:
        return (
            f"postgresql://postgres:{PASSWORD}@{host}:{self.cluster.port}/{dbname}"
            f"?sslmode=verify-full&sslrootcert={ca or self.ca}"
        )

    async def admin(self, dbname: str = "postgres") -> asyncpg.Connection:
        """A superuser connection over the Unix socket, the only way in without TLS."""
        return await asyncpg.connect(
            host=str(self.cluster.root), port=self.cluster.port, user="postgres", database=dbname
        )

    async def create_database(self) -> str:
        name = f"tls_{uuid.uuid4().hex[:12]}"
        conn = await self.admin()
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return name


@pytest.fixture(name="tls_server", scope="module")
def fx_tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make certificates")
    try:
        cluster = PgCluster.create(ssl=True)
    except PostgresNotFoundError as exc:
        pytest.skip(str(exc))
    try:
        certs = tmp_path_factory.mktemp("certs")
        _make_ca(certs, "ca")
        _make_ca(certs, "other-ca")
        _make_server_cert(certs, "ca")
        for name in ("server.crt", "server.key"):  # readable by the server's user alone
            shutil.copy(certs / name, cluster.root / name)
            (cluster.root / name).chmod(0o600)
            if cluster.user is not None:
                shutil.chown(cluster.root / name, user=cluster.user)
        cluster.settings.update(
            ssl="on",
            ssl_cert_file=str(cluster.root / "server.crt"),
            ssl_key_file=str(cluster.root / "server.key"),
        )
        # TCP only over TLS and with a password, so a connection that works used both.
        (cluster.datadir / "pg_hba.conf").write_text(
            "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n"
        )
        cluster.start()
        server = TlsServer(cluster, certs / "ca.pem", certs / "other-ca.pem")

        async def set_password() -> None:
            conn = await server.admin()
            try:
                await conn.execute(f"ALTER USER postgres PASSWORD '{PASSWORD}'")
            finally:
                await conn.close()

        asyncio.run(set_password())
        yield server
    finally:
        cluster.destroy()


@pytest.fixture(name="tls_db")
async def fx_tls_db(tls_server: TlsServer) -> str:
    """A database of this test's own on the TLS server, migrated over TLS."""
    url = tls_server.url(await tls_server.create_database())
    await asyncio.to_thread(upgrade, url)
    return url


@pytest.fixture(autouse=True)
def fx_clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SECRET_VARIABLES:
        monkeypatch.delenv(name, raising=False)


async def _tls_in_use(pool: asyncpg.Pool) -> bool:
    in_use: bool = await pool.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    return in_use


def _secret_file(directory: Path, name: str, content: str) -> Path:
    path = directory / name
    path.write_text(content)
    path.chmod(0o400)
    return path


# (a) the services' settings and the queue's pool connect with verify-full


@pytest.mark.parametrize("settings_module", ["api", "worker"])
async def test_the_services_settings_and_pool_connect_with_verify_full(
    settings_module: str, tls_server: TlsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from queue_api.settings import ApiSettings  # noqa: PLC0415 - one import per case

    settings_cls = ApiSettings if settings_module == "api" else WorkerSettings
    url = tls_server.url("postgres")
    monkeypatch.setenv("DATABASE_URL", url)

    settings = load_settings(settings_cls)
    assert settings.database_url == url  # the TLS options kept through normalisation
    pool = await create_pool(settings.database_url)
    try:
        assert await _tls_in_use(pool)
    finally:
        await pool.close()


# (b) verify-full refuses a certificate for another host or from an unknown CA, at once


@pytest.mark.parametrize(
    ("host", "use_other_ca", "reason"),
    [
        ("127.0.0.1", False, "IP address mismatch"),  # the certificate names localhost only
        ("localhost", True, "unable to get local issuer certificate"),
    ],
    ids=["wrong-host-name", "untrusted-ca"],
)
async def test_verify_full_refuses_the_server_certificate_quickly(
    host: str,
    use_other_ca: bool,  # noqa: FBT001 - a parameter
    reason: str,
    tls_server: TlsServer,
) -> None:
    ca = tls_server.other_ca if use_other_ca else tls_server.ca
    pool = await create_pool(tls_server.url("postgres", host=host, ca=ca))
    try:
        async with asyncio.timeout(10):  # an error, not a hang
            with pytest.raises(ssl.SSLCertVerificationError) as refused:
                await pool.fetchval("SELECT 1")
    finally:
        await pool.close()

    assert reason in str(refused.value)
    assert PASSWORD not in str(refused.value)


# (c) queue-migrate over TLS, the real console script


async def test_queue_migrate_runs_over_tls(tls_server: TlsServer) -> None:
    dbname = await tls_server.create_database()

    result = await asyncio.to_thread(
        run_script, ["queue-migrate"], {"DATABASE_URL": tls_server.url(dbname)}
    )

    assert result.returncode == 0, result.stdout + result.stderr
    conn = await tls_server.admin(dbname)
    try:
        tables = {r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables")}
    finally:
        await conn.close()
    assert {"jobs", "alembic_version"} <= tables


async def test_queue_migrate_refuses_an_untrusted_server_with_a_short_line(
    tls_server: TlsServer,
) -> None:
    dbname = await tls_server.create_database()
    url = tls_server.url(dbname, ca=tls_server.other_ca)

    result = await asyncio.to_thread(
        run_script, ["queue-migrate"], {"DATABASE_URL": url, "LOG_FORMAT": "json"}
    )

    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "migrate_failed" in output
    assert "certificate" in output
    assert "Traceback" not in output
    assert PASSWORD not in output


# (d) and (e): DATABASE_URL_FILE with the real worker; the secret never in its output


async def test_the_worker_reads_database_url_file_and_runs_jobs_over_tls(
    tls_db: str, tmp_path: Path
) -> None:
    url_file = _secret_file(tmp_path, "database_url", tls_db + "\n")  # as `echo` writes it
    port = free_port()
    env = {
        "DATABASE_URL": "",  # compose's ${DATABASE_URL:-}: empty counts as unset
        "DATABASE_URL_FILE": str(url_file),
        "LOG_LEVEL": "DEBUG",
        "WORKER_METRICS_PORT": str(port),
        "WORKER_POLL_INTERVAL_S": "0.05",
    }
    pool = await create_pool(tls_db)
    worker = Proc("worker", ["queue-worker"], env, tmp_path)
    try:
        job_id = await Queue(pool).enqueue(NewJob(type="noop", payload={}))
        await asyncio.to_thread(
            wait_until, lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), what="healthz"
        )
        async with asyncio.timeout(30):
            while (await Queue(pool).get(job_id)).status is not JobStatus.COMPLETED:
                await asyncio.sleep(0.05)
        worker_tls = await pool.fetch(
            "SELECT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)"
            " WHERE a.application_name = 'queue-worker'"
        )
        worker.signal(signal.SIGTERM)
        code = await asyncio.to_thread(worker.wait, 30)
        output = worker.output()
    finally:
        worker.stop()
        await pool.close()

    assert code == 0, output
    assert worker_tls, "the worker holds no connection"
    assert all(row["ssl"] for row in worker_tls)
    assert PASSWORD not in output


@pytest.mark.parametrize(
    ("script", "variable"),
    [
        ("queue-worker", "DATABASE_URL_FILE"),
        ("queue-migrate", "DATABASE_URL_FILE"),
        ("queue-api", "DATABASE_URL_FILE"),
        ("queue-worker", "SMTP_PASSWORD_FILE"),
    ],
)
def test_a_missing_secret_file_exits_2_with_one_line_naming_its_variable(
    script: str, variable: str, tmp_path: Path
) -> None:
    missing = tmp_path / "not-mounted"
    env = {"DATABASE_URL": "postgresql://u:p@localhost:1/db", "SMTP_PASSWORD": "", variable: ""}
    env[variable.removesuffix("_FILE")] = ""
    env[variable] = str(missing)

    result = run_script([script], env=env, timeout_s=30)

    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    assert result.stderr == (
        f"invalid configuration: {variable}: cannot read {missing}: No such file or directory\n"
    )


def test_a_bad_url_from_a_file_is_named_by_its_variable_without_its_password(
    tmp_path: Path,
) -> None:
    url_file = _secret_file(tmp_path, "url", f"mysql://queue:{PASSWORD}@db/queue\n")

    result = run_script(
        ["queue-worker"], env={"DATABASE_URL": "", "DATABASE_URL_FILE": str(url_file)}
    )

    assert result.returncode == 2
    assert result.stderr.startswith("invalid configuration: DATABASE_URL_FILE: must start with")
    assert result.stderr.count("\n") == 1
    assert PASSWORD not in result.stdout + result.stderr


# Settings loading: the rules of a secret file


def _refused(
    settings_cls: type[WorkerSettings | SmtpSettings], capsys: pytest.CaptureFixture[str]
) -> str:
    with pytest.raises(SystemExit) as exited:
        load_settings(settings_cls)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def test_smtp_password_file_is_read_keeping_all_but_the_final_newline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "SMTP_PASSWORD_FILE", str(_secret_file(tmp_path, "pw", SMTP_PASSWORD + "\r\n"))
    )

    settings = load_settings(SmtpSettings)

    assert settings.password == SMTP_PASSWORD
    assert SMTP_PASSWORD not in repr(settings)


def test_the_database_url_stays_out_of_the_settings_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"postgresql://u:{PASSWORD}@h/db")

    assert PASSWORD not in repr(load_settings(WorkerSettings))


@pytest.mark.parametrize(
    ("content", "problem"),
    [(b"", "is empty"), (b"\n", "is empty"), (b"\xff\xfe", "is not UTF-8 text")],
)
def test_an_unusable_secret_file_is_refused_naming_its_variable_and_path(
    content: bytes,
    problem: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "secret"
    path.write_bytes(content)
    monkeypatch.setenv("SMTP_PASSWORD_FILE", str(path))

    assert _refused(SmtpSettings, capsys) == (
        f"invalid configuration: SMTP_PASSWORD_FILE: {path} {problem}\n"
    )


def test_a_directory_is_not_a_secret_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL_FILE", str(tmp_path))

    assert _refused(WorkerSettings, capsys) == (
        f"invalid configuration: DATABASE_URL_FILE: cannot read {tmp_path}: Is a directory\n"
    )


@pytest.mark.parametrize(
    ("settings_cls", "variable"),
    [(WorkerSettings, "DATABASE_URL"), (SmtpSettings, "SMTP_PASSWORD")],
)
def test_a_variable_and_its_file_together_are_refused(
    settings_cls: type[WorkerSettings | SmtpSettings],
    variable: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(variable, f"postgresql://u:{PASSWORD}@h/db")
    monkeypatch.setenv(f"{variable}_FILE", str(_secret_file(tmp_path, "s", "postgresql://h/db")))

    line = _refused(settings_cls, capsys)

    assert line == (
        f"invalid configuration: {variable} and {variable}_FILE are both set; set only one\n"
    )


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("sslmode=verify_full", "sslmode must be one of"),
        ("sslmode=verify-full&sslrootcert=/no/such/ca.pem", "sslrootcert: cannot read"),
    ],
)
def test_tls_options_asyncpg_would_refuse_stop_the_process_at_start(
    query: str,
    problem: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"postgresql://u:{PASSWORD}@h/db?{query}"
    monkeypatch.setenv("DATABASE_URL_FILE", str(_secret_file(tmp_path, "url", url)))

    line = _refused(WorkerSettings, capsys)

    assert line.startswith(f"invalid configuration: DATABASE_URL_FILE: {problem}")
    assert PASSWORD not in line
