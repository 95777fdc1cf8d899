"""PyMySQL's preferred-mode TLS context, made once: every connection of the Doris
stand-in takes the same one, and a URL with TLS options goes PyMySQL's own way."""

import ssl

import pymysql
import pytest
from sqlalchemy import text

from wado_pipeline.resources.sql import mysql_tls


def test_pymysql_still_makes_a_context_per_connection_through_the_method_replaced():
    """After a PyMySQL upgrade: the method is still there, and for an empty option set
    (no TLS options given) it still makes a fresh context that checks no certificate."""
    make = pymysql.connections.Connection._create_ssl_ctx
    first, second = make(None, {}), make(None, {})
    assert isinstance(first, ssl.SSLContext) and first is not second
    assert first.verify_mode == ssl.CERT_NONE and not first.check_hostname
    shared = mysql_tls._PREFERRED
    assert (shared.verify_mode, shared.check_hostname) == (first.verify_mode, False)


def test_tls_options_given_go_through_pymysqls_own_path():
    conn = mysql_tls.PreferredTlsConnection.__new__(mysql_tls.PreferredTlsConnection)
    own = conn._create_ssl_ctx({"check_hostname": False, "verify_mode": False})
    assert own is not mysql_tls._PREFERRED
    assert conn._create_ssl_ctx({}) is mysql_tls._PREFERRED


@pytest.mark.stack
def test_every_connection_takes_the_shared_context(doris, monkeypatch):
    made = []
    real = mysql_tls.PreferredTlsConnection._create_ssl_ctx

    def watch(self, sslp):
        made.append(real(self, sslp))
        return made[-1]

    monkeypatch.setattr(mysql_tls.PreferredTlsConnection, "_create_ssl_ctx", watch)
    engine = doris.engine
    for _ in range(2):
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
        engine.dispose()  # the next one is a new connection
    assert len(made) == 2 and all(c is mysql_tls._PREFERRED for c in made)
