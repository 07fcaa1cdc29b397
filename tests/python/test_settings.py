import pytest

from common import settings


def test_defaults():
    cfg = settings.load({})
    assert (cfg.name, cfg.port, cfg.protocol, cfg.pg, cfg.redis_url, cfg.tls, cfg.stop_grace) == (
        "service",
        50051,
        "grpc",
        {},
        "",
        False,
        1.0,
    )


def test_service_env_of_accounts():
    env = {
        "SERVICE_NAME": "accounts",
        "PORT": "50051",
        "PROTOCOL": "grpc",
        "TLS_CERT": "/run/tls/cert.pem",
        "TLS_KEY": "/run/tls/key.pem",
        "TLS_CA": "/run/trust/ca.pem",
        "PGHOST": "postgres",
        "PGPORT": "5433",
        "PGUSER": "u",
        "PGPASSWORD": "p",
        "PGDATABASE": "d",
        "REDIS_URL": "redis://redis:6379/0",
        "STOP_GRACE": "0.5",
    }
    cfg = settings.load(env)
    assert cfg.tls and cfg.tls_ca == "/run/trust/ca.pem"
    assert cfg.pg == {"host": "postgres", "port": 5433, "user": "u", "password": "p", "dbname": "d"}
    assert cfg.redis_url == "redis://redis:6379/0" and cfg.stop_grace == 0.5


def test_pg_defaults_only_with_pghost():
    assert settings.load({"PGPORT": "1"}).pg == {}
    assert settings.load({"PGHOST": "db"}).pg == {
        "host": "db",
        "port": 5432,
        "user": "app",
        "password": "",
        "dbname": "app",
    }


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"PORT": "http"}, "PORT='http'"),
        ({"PORT": "65536"}, "PORT='65536': out of range"),
        ({"PORT": "-1"}, "PORT='-1': out of range"),
        ({"PGHOST": "db", "PGPORT": "x"}, "PGPORT='x'"),
        ({"PROTOCOL": "https"}, "PROTOCOL='https'"),
        ({"TLS_CERT": "/c.pem"}, "TLS_CERT and TLS_KEY"),
        ({"TLS_KEY": "/k.pem"}, "TLS_CERT and TLS_KEY"),
        ({"STOP_GRACE": "soon"}, "STOP_GRACE='soon'"),
        ({"STOP_GRACE": "-1"}, "STOP_GRACE='-1'"),
        ({"STOP_GRACE": "nan"}, "STOP_GRACE='nan'"),
    ],
)
def test_bad_values_name_the_variable(env, names):
    with pytest.raises(settings.SettingsError, match=names.replace("(", r"\(")):
        settings.load(env)


def test_reads_os_environ(monkeypatch):
    monkeypatch.setenv("SERVICE_NAME", "from-env")
    monkeypatch.setenv("PORT", "0")
    cfg = settings.load()
    assert (cfg.name, cfg.port) == ("from-env", 0)
