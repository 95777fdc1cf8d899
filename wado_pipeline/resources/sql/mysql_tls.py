"""PyMySQL's default TLS mode, with its TLS context made once, before run workers fork.

Given no TLS options, PyMySQL (1.2) tries TLS when the server offers it and goes on
without it otherwise ("preferred"), checking no certificate. For that it makes a new
``ssl.SSLContext`` for every connection, loading the system's certificate store each
time: ~60 ms of CPU, in every run's Doris write (a run worker opens one connection)
and every verification. Here the context is made when this module is imported, which
the warm process does before it forks the workers (``code_location_modules`` in
dagster.yaml), so each connection takes the same context. With TLS options in the URL
(``ssl_ca`` and the like), connections go through PyMySQL's own path unchanged.
"""

from __future__ import annotations

import ssl

import pymysql
from sqlalchemy import Engine, event

# PyMySQL's own context for the preferred mode (an empty option set), made once.
_PREFERRED = pymysql.connections.Connection._create_ssl_ctx(None, {})


class PreferredTlsConnection(pymysql.connections.Connection):
    """A PyMySQL connection whose preferred-mode TLS context is the shared one."""

    def _create_ssl_ctx(self, sslp) -> ssl.SSLContext:
        if isinstance(sslp, dict) and not sslp:
            return _PREFERRED
        return super()._create_ssl_ctx(sslp)


def share_tls_context(engine: Engine) -> Engine:
    """Have ``engine`` (a ``mysql+pymysql`` one) connect through
    ``PreferredTlsConnection``; returns it."""

    @event.listens_for(engine, "do_connect")
    def _connect(dialect, conn_rec, cargs, cparams):
        return PreferredTlsConnection(*cargs, **cparams)

    return engine
