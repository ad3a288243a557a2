"""Kafka security from the environment: TLS and SASL (SCRAM, PLAIN) for every client.

Every Kafka client opspulse creates (the Faust app, the state producers and
readers, the admin clients, the generator's producer, the KPI reader) takes its
security settings from here, so one set of variables secures all of them:

    OPSPULSE_KAFKA_SECURITY_PROTOCOL  PLAINTEXT (default) | SSL | SASL_PLAINTEXT | SASL_SSL
    OPSPULSE_KAFKA_SASL_MECHANISM     SCRAM-SHA-256 (default with SASL) | SCRAM-SHA-512 | PLAIN
    OPSPULSE_KAFKA_USERNAME           SASL user (required with SASL)
    OPSPULSE_KAFKA_PASSWORD           SASL password (required with SASL)
    OPSPULSE_KAFKA_CA_FILE            PEM file of the CA(s) to trust (default: the system's)
    OPSPULSE_KAFKA_CERT_FILE          PEM client certificate (chain), for mutual TLS
    OPSPULSE_KAFKA_KEY_FILE           PEM private key of that certificate
    OPSPULSE_KAFKA_KEY_PASSWORD       password of an encrypted KEY_FILE
    OPSPULSE_KAFKA_CHECK_HOSTNAME     true (default) | false: the broker's certificate must
                                      name the host connected to (the chain is always verified)

A setting that would be silently ignored (a username without SASL, a CA file
without TLS) is an error, as are an unknown value, SASL without credentials and
an unreadable or invalid file: `KafkaSecurityError`, a `ConfigError`, so every
command stops with exit 2 and one line naming the variable. Secrets (the
password, the key password) are never logged, never in a repr or an error
message.
"""

from __future__ import annotations

import functools
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from state.config import ConfigError

PREFIX = "OPSPULSE_KAFKA_"
PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN")
VARIABLES = (
    "SECURITY_PROTOCOL", "SASL_MECHANISM", "USERNAME", "PASSWORD", "CA_FILE", "CERT_FILE",
    "KEY_FILE", "KEY_PASSWORD", "CHECK_HOSTNAME",
)  # fmt: skip
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class KafkaSecurityError(ConfigError):
    """Bad or inconsistent OPSPULSE_KAFKA_* settings (exit 2, one line)."""


@dataclass(frozen=True)
class KafkaSecurity:
    """The validated settings. The secrets are kept out of repr (and so out of logs)."""

    protocol: str = "PLAINTEXT"
    mechanism: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    key_password: str | None = field(default=None, repr=False)
    check_hostname: bool = True

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    def describe(self) -> str:
        """For people and logs, without secrets: 'SASL_SSL, SCRAM-SHA-256, user opspulse, CA …'."""
        parts = [self.protocol]
        if self.sasl:
            parts += [str(self.mechanism), f"user {self.username}"]
        if self.tls:
            parts.append(f"CA {self.ca_file or 'system'}")
            if self.cert_file:
                parts.append(f"client certificate {self.cert_file}")
            if not self.check_hostname:
                parts.append("hostname not checked")
        return ", ".join(parts)


def from_env(environ: Mapping[str, str] | None = None) -> KafkaSecurity:
    """Parse and check the OPSPULSE_KAFKA_* variables (files must be readable)."""
    env = os.environ if environ is None else environ

    def get(name: str) -> str | None:
        value = env.get(PREFIX + name)
        return value if value not in (None, "") else None

    protocol = (get("SECURITY_PROTOCOL") or "PLAINTEXT").strip().upper()
    if protocol not in PROTOCOLS:
        raise KafkaSecurityError(
            f"{PREFIX}SECURITY_PROTOCOL: expected one of {', '.join(PROTOCOLS)}, "
            f"got {get('SECURITY_PROTOCOL')!r}"
        )
    sasl = protocol in ("SASL_PLAINTEXT", "SASL_SSL")
    tls = protocol in ("SSL", "SASL_SSL")

    def unused(names: tuple[str, ...], needs: str, choices: str) -> None:
        given = [PREFIX + n for n in names if get(n) is not None]
        if given:
            raise KafkaSecurityError(
                f"{', '.join(given)} set but {PREFIX}SECURITY_PROTOCOL is {protocol}, "
                f"which uses no {needs}: set it to {choices} (or unset the former)"
            )

    mechanism = None
    username = password = None
    if sasl:
        mechanism = (get("SASL_MECHANISM") or "SCRAM-SHA-256").strip().upper()
        if mechanism not in MECHANISMS:
            raise KafkaSecurityError(
                f"{PREFIX}SASL_MECHANISM: expected one of {', '.join(MECHANISMS)}, "
                f"got {get('SASL_MECHANISM')!r}"
            )
        username, password = get("USERNAME"), get("PASSWORD")
        missing = [PREFIX + n for n, v in (("USERNAME", username), ("PASSWORD", password)) if not v]
        if missing:
            raise KafkaSecurityError(
                f"{PREFIX}SECURITY_PROTOCOL={protocol} needs {' and '.join(missing)}"
            )
    else:
        unused(("SASL_MECHANISM", "USERNAME", "PASSWORD"), "SASL", "SASL_SSL or SASL_PLAINTEXT")

    ca_file = cert_file = key_file = key_password = None
    check_hostname = True
    if tls:
        ca_file = _readable("CA_FILE", get("CA_FILE"))
        cert_file = _readable("CERT_FILE", get("CERT_FILE"))
        key_file = _readable("KEY_FILE", get("KEY_FILE"))
        key_password = get("KEY_PASSWORD")
        if bool(cert_file) != bool(key_file):
            given, wanted = ("CERT_FILE", "KEY_FILE") if cert_file else ("KEY_FILE", "CERT_FILE")
            raise KafkaSecurityError(f"{PREFIX}{given} needs {PREFIX}{wanted} too (mutual TLS)")
        if key_password and not key_file:
            raise KafkaSecurityError(f"{PREFIX}KEY_PASSWORD set without {PREFIX}KEY_FILE")
        flag = (get("CHECK_HOSTNAME") or "true").strip().lower()
        if flag not in _TRUE | _FALSE:
            raise KafkaSecurityError(
                f"{PREFIX}CHECK_HOSTNAME: expected true or false, got {get('CHECK_HOSTNAME')!r}"
            )
        check_hostname = flag in _TRUE
    else:
        unused(
            ("CA_FILE", "CERT_FILE", "KEY_FILE", "KEY_PASSWORD", "CHECK_HOSTNAME"),
            "TLS",
            "SSL or SASL_SSL",
        )

    return KafkaSecurity(
        protocol=protocol, mechanism=mechanism, username=username, password=password,
        ca_file=ca_file, cert_file=cert_file, key_file=key_file, key_password=key_password,
        check_hostname=check_hostname,
    )  # fmt: skip


def _readable(name: str, path: str | None) -> str | None:
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        raise KafkaSecurityError(
            f"{PREFIX}{name}: cannot read {path}: {exc.strerror or exc}"
        ) from None
    return path


def ssl_context(security: KafkaSecurity) -> ssl.SSLContext | None:
    """The client TLS context (None without TLS): the broker's chain is verified against
    CA_FILE or the system store; with CERT_FILE and KEY_FILE, the client certificate."""
    if not security.tls:
        return None
    from aiokafka.helpers import create_ssl_context

    try:
        context = create_ssl_context(cafile=security.ca_file)
    except (ssl.SSLError, ValueError) as exc:
        raise KafkaSecurityError(
            f"{PREFIX}CA_FILE: {security.ca_file} holds no usable PEM certificate ({_reason(exc)})"
        ) from None
    if security.cert_file and security.key_file:
        try:
            # Without KEY_PASSWORD an encrypted key fails here: OpenSSL's default would
            # prompt for the pass phrase on the terminal.
            context.load_cert_chain(
                security.cert_file,
                security.key_file,
                password=security.key_password or _no_password,
            )
        except (ssl.SSLError, ValueError) as exc:  # never the password itself
            raise KafkaSecurityError(
                f"{PREFIX}CERT_FILE/{PREFIX}KEY_FILE: cannot load {security.cert_file} with "
                f"{security.key_file} (not PEM, not a matching pair, or a wrong or missing "
                f"{PREFIX}KEY_PASSWORD: {_reason(exc)})"
            ) from None
    context.check_hostname = security.check_hostname
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def _no_password() -> str:
    return ""


def _reason(exc: BaseException) -> str:
    return getattr(exc, "reason", None) or type(exc).__name__


@functools.lru_cache(maxsize=4)
def _cached(values: tuple[str | None, ...]) -> tuple[KafkaSecurity, ssl.SSLContext | None]:
    security = from_env({PREFIX + n: v for n, v in zip(VARIABLES, values, strict=True) if v})
    return security, ssl_context(security)


def current() -> tuple[KafkaSecurity, ssl.SSLContext | None]:
    """The settings of this process's environment and their TLS context (built once)."""
    return _cached(tuple(os.environ.get(PREFIX + n) for n in VARIABLES))


def client_kwargs() -> dict[str, Any]:
    """Keyword arguments for AIOKafkaProducer, AIOKafkaConsumer and AIOKafkaAdminClient."""
    security, context = current()
    kwargs: dict[str, Any] = {"security_protocol": security.protocol}
    if context is not None:
        kwargs["ssl_context"] = context
    if security.sasl:
        kwargs.update(
            sasl_mechanism=security.mechanism,
            sasl_plain_username=security.username,
            sasl_plain_password=security.password,
        )
    return kwargs


def broker_credentials() -> Any:
    """Faust's `broker_credentials` for the same settings (None for PLAINTEXT).

    faust-streaming 0.15.3 turns these into the same aiokafka arguments for its
    consumers and producers (credentials_to_aiokafka_auth): SASLCredentials with an
    ssl_context is SASL_SSL, without one SASL_PLAINTEXT; SSLCredentials is SSL."""
    import faust

    security, context = current()
    if security.sasl:
        return faust.SASLCredentials(
            username=security.username,
            password=security.password,
            ssl_context=context,
            mechanism=security.mechanism,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None
