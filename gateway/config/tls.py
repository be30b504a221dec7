"""The files `[uplink]` names, read and checked: the TLS CA, client certificate and key.

`context(tls)` builds the TLS context the uplink connects with; `problems(uplink)` is what
`gateway check` reports about those files and the password file. Both name the config path
and the file (`uplink.tls.ca: cannot read /etc/gateway/ca.pem: No such file or directory`).
A problem here keeps only the uplink down (it retries on its backoff, so fixing the file
heals it): it is not a reason to refuse the config, and `load` does not look at these files.
Must not: connect to anything or log.
"""

from __future__ import annotations

import ssl

from gateway.config.loader import TlsConfig, UplinkConfig
from gateway.errors import ConfigError, Problem

MAX_PEM_BYTES = 1 << 20  # a CA bundle is ~200 KB; anything far larger is not a PEM file


def _read(path: str, where: str) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PEM_BYTES + 1)
    except OSError as exc:
        raise ConfigError([Problem(where, f"cannot read {path}: {exc.strerror or exc}")]) from None
    if len(data) > MAX_PEM_BYTES:
        raise ConfigError([Problem(where, f"{path} is larger than {MAX_PEM_BYTES} bytes")])
    return data.decode("ascii", errors="replace")


def _pem(path: str, where: str, kinds: tuple[str, ...], what: str) -> None:
    text = _read(path, where)
    if not any(f"-----BEGIN {kind}-----" in text for kind in kinds):
        raise ConfigError([Problem(where, f"{path} is not a PEM {what}")])


def context(tls: TlsConfig) -> ssl.SSLContext:
    """The client TLS context for `tls`; raises ConfigError naming the file at fault."""
    if tls.ca:
        _pem(tls.ca, "uplink.tls.ca", ("CERTIFICATE", "TRUSTED CERTIFICATE"), "certificate")
    try:
        ctx = ssl.create_default_context(cafile=tls.ca or None)
    except (OSError, ssl.SSLError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise ConfigError(
            [Problem("uplink.tls.ca", f"{tls.ca}: not a usable CA certificate ({reason})")]
        ) from None
    if tls.cert:
        _pem(tls.cert, "uplink.tls.cert", ("CERTIFICATE",), "certificate")
        if tls.key:
            _pem(
                tls.key,
                "uplink.tls.key",
                ("PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"),
                "private key",
            )
        try:
            ctx.load_cert_chain(tls.cert, tls.key or None)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise ConfigError(
                [
                    Problem(
                        "uplink.tls.key",
                        f"{tls.key} does not load with {tls.cert}: {reason} "
                        "(an encrypted key, or not the certificate's key)",
                    )
                ]
            ) from None
    return ctx


def problems(uplink: UplinkConfig) -> list[Problem]:
    """What is wrong with the files `uplink` names (empty when they are all usable)."""
    found: list[Problem] = []
    if uplink.enabled and uplink.tls.enabled:
        try:
            context(uplink.tls)
        except ConfigError as exc:
            found.extend(exc.problems)
    if uplink.enabled and uplink.password_file:
        try:
            with open(uplink.password_file, encoding="utf-8") as f:
                f.readline()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            found.append(
                Problem("uplink.password_file", f"cannot read {uplink.password_file}: {reason}")
            )
    return found
