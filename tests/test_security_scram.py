"""SCRAM (raftka.node.security.scram): RFC 7677's test vector, the server exchange, malformed messages."""

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftka.node.security.scram import (ScramCredential, ScramError, ScramExchange, client_final_message,
                                        client_first_user)

RFC7677_SERVER_FIRST = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"


def test_rfc7677_scram_sha_256_vector():
    final, server_signature = client_final_message("SCRAM-SHA-256", "pencil", "n=user,r=rOprNGfwEbeRWgbNEkqO",
                                                   RFC7677_SERVER_FIRST)
    assert final == ("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                     "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    assert base64.b64encode(server_signature) == b"6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def exchange(mechanism: str, stored: ScramCredential | None, user: str, password: str) -> tuple[str, bytes]:
    server = ScramExchange(mechanism, lambda name: stored if name == user else None)
    escaped = user.replace("=", "=3D").replace(",", "=2C")
    first_bare = f"n={escaped},r=clientnonce123"
    server_first = server.first(f"n,,{first_bare}".encode()).decode()
    final, expected = client_final_message(mechanism, password, first_bare, server_first)
    name, server_final = server.final(final.encode())
    assert server_final == b"v=" + base64.b64encode(expected)
    return name, server_final


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_exchange_accepts_the_right_password_and_refuses_a_wrong_one(mechanism):
    stored = ScramCredential.from_password(mechanism, "correct horse")
    assert exchange(mechanism, stored, "alice", "correct horse")[0] == "alice"
    with pytest.raises(ScramError, match="authentication failed"):
        exchange(mechanism, stored, "alice", "battery staple")


def test_unknown_user_fails_at_the_proof_with_a_stable_salt():
    salts = set()
    for _ in range(2):
        server = ScramExchange("SCRAM-SHA-256", lambda name: None)
        salts.add(server.first(b"n,,n=ghost,r=abc").split(b",")[1])
    assert len(salts) == 1  # an unknown user looks like a known one: same salt on every attempt
    server = ScramExchange("SCRAM-SHA-256", lambda name: None)
    server_first = server.first(b"n,,n=ghost,r=abc").decode()
    final, _ = client_final_message("SCRAM-SHA-256", "anything", "n=ghost,r=abc", server_first)
    with pytest.raises(ScramError, match="authentication failed"):
        server.final(final.encode())


def test_a_credential_of_the_other_mechanism_does_not_authenticate():
    stored = ScramCredential.from_password("SCRAM-SHA-512", "pw")
    with pytest.raises(ScramError):
        exchange("SCRAM-SHA-256", stored, "alice", "pw")


@settings(max_examples=25, deadline=None)
@given(user=st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1, max_size=12),
       password=st.text(min_size=1, max_size=20))
def test_names_with_commas_and_equals_and_unicode_passwords(user, password):
    stored = ScramCredential.from_password("SCRAM-SHA-256", password)
    assert exchange("SCRAM-SHA-256", stored, user, password)[0] == user


@settings(max_examples=300, deadline=None)
@given(first=st.binary(max_size=80), final=st.binary(max_size=120))
def test_malformed_messages_raise_scram_error_only(first, final):
    stored = ScramCredential.from_password("SCRAM-SHA-256", "pw", salt=b"fixed-salt")
    server = ScramExchange("SCRAM-SHA-256", lambda name: stored)
    try:
        server.first(first)
    except ScramError:
        return
    with pytest.raises(ScramError):
        server.final(final)


@pytest.mark.parametrize("message", [b"p=tls-unique,,n=a,r=x", b"n,,r=x,n=a", b"n,,n=a", b"n,x,n=a,r=b",
                                     b"n,,n=a=ZZ,r=b", b"n,,n=a,r=b,m=ext", b"n,,n=,r=b", b"\xff\xfe"])
def test_malformed_client_first_messages(message):
    with pytest.raises(ScramError):
        ScramExchange("SCRAM-SHA-256", lambda name: None).first(message)


def test_final_with_a_wrong_nonce_or_binding_is_refused():
    stored = ScramCredential.from_password("SCRAM-SHA-256", "pw")
    for tamper in (lambda f: f.replace("r=clientnonce123", "r=othernonce"), lambda f: f.replace("c=biws", "c=eSws")):
        server = ScramExchange("SCRAM-SHA-256", lambda name: stored)
        server_first = server.first(b"n,,n=alice,r=clientnonce123").decode()
        final, _ = client_final_message("SCRAM-SHA-256", "pw", "n=alice,r=clientnonce123", server_first)
        with pytest.raises(ScramError):
            server.final(tamper(final).encode())


def test_verify_password_and_json_round_trip():
    stored = ScramCredential.from_password("SCRAM-SHA-512", "s3cret", iterations=4096)
    again = ScramCredential.from_json("SCRAM-SHA-512", stored.to_json())
    assert again == stored and again.verify_password(b"s3cret") and not again.verify_password(b"s3cret ")
    assert "s3cret" not in str(stored.to_json())


def test_client_first_user_reads_the_escaped_name():
    assert client_first_user(b"n,,n=al=2Cice=3D,r=abc") == "al,ice="
    for bad in (b"n,,r=abc", b"\xff", b"x", b"n,,n=a=XX,r=1"):
        with pytest.raises(ScramError):
            client_first_user(bad)


def test_librdkafka_2_0_doubled_client_nonce_is_accepted_as_kafka_does():
    stored = ScramCredential.from_password("SCRAM-SHA-256", "pw")
    for nonce_of, accepted in ((lambda combined: "cn0nce" + combined, True), (lambda combined: combined[:-1], False),
                               (lambda combined: combined + "x", False)):
        server = ScramExchange("SCRAM-SHA-256", lambda name: stored)
        server_first = server.first(b"n,,n=alice,r=cn0nce").decode()
        combined = dict(part.split("=", 1) for part in server_first.split(","))["r"]
        final, _ = client_final_message("SCRAM-SHA-256", "pw", "n=alice,r=cn0nce", server_first,
                                        nonce=nonce_of(combined))
        if accepted:
            assert server.final(final.encode())[0] == "alice"
        else:
            with pytest.raises(ScramError, match="nonce"):
                server.final(final.encode())
