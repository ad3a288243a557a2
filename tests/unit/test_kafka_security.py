"""OPSPULSE_KAFKA_* parsing (agents/kafka_security.py): defaults, one-line errors for
bad values and combinations, the TLS context, the same settings for aiokafka and
Faust, and secrets kept out of reprs and messages. The broker side is tested in
tests/integration/test_kafka_security_broker.py."""

import ssl

import pytest
from certs import make_pki
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from agents import kafka_security as ks
from agents.cli import main
from state.config import ConfigError

PASSWORD = "pa55-w0rd-s3cret"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def env(monkeypatch):
    """Set OPSPULSE_KAFKA_<NAME> variables (short names) on a clean slate."""
    for name in ks.VARIABLES:
        monkeypatch.delenv(ks.PREFIX + name, raising=False)

    def set_(**values):
        for name, value in values.items():
            monkeypatch.setenv(ks.PREFIX + name.upper(), str(value))

    return set_


def parse(**values):
    return ks.from_env({ks.PREFIX + k.upper(): str(v) for k, v in values.items()})


def error(**values) -> str:
    with pytest.raises(ks.KafkaSecurityError) as caught:
        parse(**values)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_defaults_are_plaintext_and_change_no_client(env):
    assert parse() == ks.KafkaSecurity(protocol="PLAINTEXT")
    assert ks.client_kwargs() == {"security_protocol": "PLAINTEXT"}
    assert ks.broker_credentials() is None
    assert issubclass(ks.KafkaSecurityError, ConfigError)  # the CLI's exit 2


def test_sasl_defaults_to_scram_sha_256_and_the_system_trust_store():
    s = parse(security_protocol="sasl_ssl", username="ops", password=PASSWORD)
    assert (s.protocol, s.mechanism, s.username, s.password) == (
        "SASL_SSL", "SCRAM-SHA-256", "ops", PASSWORD,
    )  # fmt: skip
    assert s.ca_file is None and s.check_hostname
    context = ks.ssl_context(s)
    assert context is not None and context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.cert_store_stats()["x509_ca"] > 0 or ssl.get_default_verify_paths().cafile
    assert parse(
        security_protocol="SASL_PLAINTEXT", sasl_mechanism="scram-sha-512", username="u",
        password="p",
    ).mechanism == "SCRAM-SHA-512"  # fmt: skip
    assert (
        ks.ssl_context(parse(security_protocol="SASL_PLAINTEXT", username="u", password="p"))
        is None
    )


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"security_protocol": "TLS"}, "SECURITY_PROTOCOL: expected one of PLAINTEXT, SSL"),
        (
            {"security_protocol": "SASL_SSL", "sasl_mechanism": "GSSAPI", "username": "u",
             "password": "p"},
            "SASL_MECHANISM: expected one of SCRAM-SHA-256, SCRAM-SHA-512, PLAIN, got 'GSSAPI'",
        ),
        ({"security_protocol": "SASL_SSL", "password": "p"}, "needs OPSPULSE_KAFKA_USERNAME"),
        ({"security_protocol": "SASL_SSL", "username": "u"}, "needs OPSPULSE_KAFKA_PASSWORD"),
        (
            {"security_protocol": "SASL_PLAINTEXT"},
            "needs OPSPULSE_KAFKA_USERNAME and OPSPULSE_KAFKA_PASSWORD",
        ),
        ({"username": "u", "password": "p"}, "SECURITY_PROTOCOL is PLAINTEXT, which uses no SASL"),
        ({"security_protocol": "SSL", "sasl_mechanism": "PLAIN"}, "which uses no SASL"),
        (
            {"security_protocol": "SASL_PLAINTEXT", "username": "u", "password": "p",
             "ca_file": "/x"},
            "OPSPULSE_KAFKA_CA_FILE set but OPSPULSE_KAFKA_SECURITY_PROTOCOL is SASL_PLAINTEXT, "
            "which uses no TLS",
        ),
        ({"check_hostname": "false"}, "which uses no TLS"),
        ({"security_protocol": "SSL", "check_hostname": "maybe"}, "expected true or false"),
        ({"security_protocol": "SSL", "ca_file": "/nonexistent/ca.pem"},
         "OPSPULSE_KAFKA_CA_FILE: cannot read /nonexistent/ca.pem: No such file or directory"),
    ],
)  # fmt: skip
def test_bad_values_and_combinations_are_one_line_errors(values, expected):
    assert expected in error(**values)


def test_files_are_checked(pki, tmp_path):
    assert "needs OPSPULSE_KAFKA_KEY_FILE too" in error(
        security_protocol="SSL", cert_file=pki.client_cert
    )
    assert "needs OPSPULSE_KAFKA_CERT_FILE too" in error(
        security_protocol="SSL", key_file=pki.client_key
    )
    assert "KEY_PASSWORD set without" in error(security_protocol="SSL", key_password="x")
    assert "cannot read" in error(security_protocol="SSL", ca_file=tmp_path)  # a directory
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ks.KafkaSecurityError, match="CA_FILE: .*junk.pem holds no usable PEM"):
        ks.ssl_context(parse(security_protocol="SSL", ca_file=junk))
    # the key of another certificate
    with pytest.raises(ks.KafkaSecurityError, match="cannot load .*client.pem with .*junk.pem"):
        ks.ssl_context(parse(security_protocol="SSL", cert_file=pki.client_cert, key_file=junk))


def test_mutual_tls_and_an_encrypted_key(pki):
    base = {"security_protocol": "SSL", "ca_file": pki.ca, "cert_file": pki.client_cert}
    assert ks.ssl_context(parse(**base, key_file=pki.client_key)) is not None
    assert ks.ssl_context(
        parse(**base, key_file=pki.client_key_encrypted, key_password=pki.key_password)
    )
    with pytest.raises(ks.KafkaSecurityError) as caught:
        ks.ssl_context(parse(**base, key_file=pki.client_key_encrypted, key_password="wrong-kp"))
    assert "KEY_PASSWORD" in str(caught.value) and "wrong-kp" not in str(caught.value)
    with pytest.raises(ks.KafkaSecurityError, match="wrong or missing OPSPULSE_KAFKA_KEY_PASSWORD"):
        ks.ssl_context(parse(**base, key_file=pki.client_key_encrypted))  # no terminal prompt
    relaxed = ks.ssl_context(parse(**base, key_file=pki.client_key, check_hostname="false"))
    assert relaxed is not None and not relaxed.check_hostname
    assert relaxed.verify_mode == ssl.CERT_REQUIRED  # the chain is still verified


def test_aiokafka_and_faust_get_the_same_settings(env, pki):
    env(security_protocol="SASL_SSL", username="ops", password=PASSWORD, ca_file=pki.ca)
    kwargs = ks.client_kwargs()
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-256"
    assert (kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == ("ops", PASSWORD)
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)
    assert ks.client_kwargs()["ssl_context"] is kwargs["ssl_context"]  # built once
    # What Faust hands its own consumers and producers (faust-streaming 0.15.3).
    assert credentials_to_aiokafka_auth(ks.broker_credentials()) == kwargs

    env(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", ca_file="")
    kwargs = ks.client_kwargs()
    assert "ssl_context" not in kwargs and kwargs["sasl_mechanism"] == "PLAIN"
    assert credentials_to_aiokafka_auth(ks.broker_credentials()) == {**kwargs, "ssl_context": None}

    env(
        security_protocol="SSL", username="", password="", sasl_mechanism="", ca_file=pki.ca,
        cert_file=pki.client_cert, key_file=pki.client_key,
    )  # fmt: skip
    kwargs = ks.client_kwargs()
    assert set(kwargs) == {"security_protocol", "ssl_context"}
    assert credentials_to_aiokafka_auth(ks.broker_credentials()) == kwargs


def test_secrets_stay_out_of_reprs_descriptions_and_errors(env, pki):
    s = parse(
        security_protocol="SASL_SSL", username="ops", password=PASSWORD, ca_file=pki.ca,
        cert_file=pki.client_cert, key_file=pki.client_key_encrypted,
        key_password=pki.key_password,
    )  # fmt: skip
    for text in (repr(s), str(s), s.describe()):
        assert PASSWORD not in text and pki.key_password not in text
    assert s.describe().startswith("SASL_SSL, SCRAM-SHA-256, user ops, CA ")
    env(security_protocol="SASL_SSL", username="ops", password=PASSWORD)
    assert PASSWORD not in repr(ks.broker_credentials())
    assert PASSWORD not in error(
        security_protocol="SASL_SSL", sasl_mechanism="X", username="u", password=PASSWORD
    )
    assert PASSWORD not in error(password=PASSWORD)


def test_a_bad_setting_stops_a_command_with_exit_2_and_one_line(env, capsys):
    env(security_protocol="SASL_SSL", username="ops")
    assert main(["snapshot"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "opspulse snapshot: OPSPULSE_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs "
        "OPSPULSE_KAFKA_PASSWORD\n"
    )
