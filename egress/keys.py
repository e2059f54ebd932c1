"""What the egress proxy's own key does (TETHER_EGRESS_PRIVATE_KEY, which nothing else holds):
it seals credentials' secret values, so a Secret holding them is unreadable to everyone else
who can read Secrets, and it makes each run's certificate authority. Pure: bytes in, bytes out.

Each use takes a key of its own, derived with HKDF from the one the proxy holds; every replica
derives the same ones, so any of them opens what another sealed, and signs for the CA of a run
whose sandbox trusted another.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import json
import os
from functools import lru_cache

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


class Unsealable(ValueError):
    """A sealed value this key did not seal for this credential (or that was tampered with)."""


def root_key(encoded: str) -> bytes:
    """The proxy's key, from its base64 setting: at least 32 bytes."""
    key = base64.b64decode(encoded, validate=True)
    if len(key) < 32:
        raise ValueError("TETHER_EGRESS_PRIVATE_KEY must hold at least 32 bytes (base64)")
    return key


def derive(root: bytes, purpose: str, length: int = 32) -> bytes:
    return HKDF(hashes.SHA256(), length, salt=None, info=purpose.encode()).derive(root)


def _bound(namespace: str, credential: str) -> bytes:
    """What a sealed value is bound to: copied into another tenant's, or another credential's,
    Secret, it does not open."""
    return f"tether-credential/{namespace}/{credential}".encode()


def seal(root: bytes, namespace: str, credential: str, values: dict[str, str]) -> str:
    nonce = os.urandom(12)
    box = AESGCM(derive(root, "credential-seal"))
    sealed = box.encrypt(nonce, json.dumps(values).encode(), _bound(namespace, credential))
    return base64.b64encode(nonce + sealed).decode()


def unseal(root: bytes, namespace: str, credential: str, sealed: str) -> dict[str, str]:
    try:
        raw = base64.b64decode(sealed, validate=True)
        box = AESGCM(derive(root, "credential-seal"))
        return json.loads(box.decrypt(raw[:12], raw[12:], _bound(namespace, credential)))
    except Exception as error:  # bad base64, a wrong binding, a changed byte: all the same
        raise Unsealable(f"credential {namespace}/{credential} does not open") from error


@lru_cache(maxsize=4096)
def run_authority(root: bytes, run: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """The certificate authority of one run (its Interaction's uid): the only one its sandbox
    trusts for intercepted connections; no other run's sandbox trusts it."""
    scalar = int.from_bytes(derive(root, f"run-ca/{run}", 48), "big") % (P256_ORDER - 1) + 1
    key = ec.derive_private_key(scalar, ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tether egress proxy"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"Tether run {run}"),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(hashlib.sha256(run.encode()).digest()[:16], "big") >> 1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def authority_pem(root: bytes, run: str) -> bytes:
    return run_authority(root, run)[1].public_bytes(serialization.Encoding.PEM)


@lru_cache(maxsize=4096)
def leaf(root: bytes, run: str, host: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A certificate for `host`, signed by the run's authority (with the authority's key, as
    mitmproxy does: one key per run, not one per host)."""
    key, authority = run_authority(root, run)
    try:
        names: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(host))]
    except ValueError:
        names = [x509.DNSName(host)]
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host[:64])]))
        .issuer_name(authority.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key
