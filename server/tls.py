"""TLS for `ztcp serve`: uvicorn's options from the settings, the files checked before anything starts."""

from __future__ import annotations

from pathlib import Path
from typing import TypedDict

from server.errors import ConfigError
from server.settings import Settings


class TlsOptions(TypedDict, total=False):
    """uvicorn.Config's TLS keywords."""

    ssl_certfile: str
    ssl_keyfile: str
    ssl_ca_certs: str
    ssl_cert_reqs: int


def tls_options(settings: Settings) -> TlsOptions:
    """uvicorn's TLS options from the settings, after checking the files (a clear error, not a
    traceback from the ssl module; a private key others can read is refused)."""
    if not settings.tls_cert_file:
        return {}
    import ssl

    files = {"ZTCP_TLS_CERT_FILE": settings.tls_cert_file, "ZTCP_TLS_KEY_FILE": settings.tls_key_file,
             "ZTCP_TLS_CLIENT_CA_FILE": settings.tls_client_ca_file}
    for name, path in files.items():
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"{name}: no such file: {path}")
    if settings.tls_key_file is None:  # (the settings refuse one without the other)
        raise ConfigError("ZTCP_TLS_CERT_FILE and ZTCP_TLS_KEY_FILE go together")
    key = Path(settings.tls_key_file)
    if key.stat().st_mode & 0o077:
        raise ConfigError(f"ZTCP_TLS_KEY_FILE: {key} is readable by others; chmod 600 it")
    try:  # load once here so a wrong key or a bad PEM is one line, before anything starts
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(settings.tls_cert_file), str(key))
        if settings.tls_client_ca_file:
            ctx.load_verify_locations(str(settings.tls_client_ca_file))
    except (ssl.SSLError, ValueError) as exc:
        raise ConfigError(f"TLS files cannot be used: {exc}") from None
    opts: TlsOptions = {"ssl_certfile": str(settings.tls_cert_file), "ssl_keyfile": str(key)}
    if settings.tls_client_ca_file:
        opts["ssl_ca_certs"] = str(settings.tls_client_ca_file)
        opts["ssl_cert_reqs"] = ssl.CERT_REQUIRED
    return opts
