"""A throwaway certificate authority for a local control plane: pure functions, PEM out."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = dt.timedelta(days=365)


@dataclass(frozen=True)
class KeyPair:
    cert: bytes
    key: bytes


@dataclass(frozen=True)
class ClusterPki:
    """Everything kube-apiserver, its clients and the service-account signer need."""

    ca: KeyPair
    serving: KeyPair
    admin: KeyPair
    kubelet_client: KeyPair
    """How kube-apiserver proves itself to kubelets (logs, exec, port-forward)."""
    service_account_key: bytes
    service_account_pub: bytes


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _builder(subject: x509.Name, issuer: x509.Name, public_key) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
    )


def _leaf(ca_key, ca_name: x509.Name, subject: x509.Name, usage, sans=None) -> KeyPair:
    key = _key()
    builder = (
        _builder(subject, ca_name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key))


def _authority(common: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    ca_key = _key()
    ca_name = _name(common)
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
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
        .sign(ca_key, hashes.SHA256())
    )
    return ca_key, ca_cert


def authority(common: str) -> KeyPair:
    """A certificate authority of its own (for a local HTTPS server's clients to trust)."""
    key, cert = _authority(common)
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key))


def _signer(ca: KeyPair):
    """A CA's key and name, to sign with."""
    return (
        serialization.load_pem_private_key(ca.key, password=None),
        x509.load_pem_x509_certificate(ca.cert).subject,
    )


def server(ca: KeyPair, host: str, *more: str) -> KeyPair:
    """A serving certificate for the host names `host` (and `more`), signed by `ca`."""
    ca_key, ca_name = _signer(ca)
    sans = [x509.DNSName(name) for name in (host, *more)]
    return _leaf(ca_key, ca_name, _name(host), ExtendedKeyUsageOID.SERVER_AUTH, sans)


def server_context(ca: KeyPair, host: str, *more: str) -> ssl.SSLContext:
    """A TLS server context serving a certificate for the host names, signed by `ca`."""
    pair = server(ca, host, *more)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory(prefix="tether-tls-") as folder:
        cert, key = Path(folder) / "cert.pem", Path(folder) / "key.pem"
        cert.write_bytes(pair.cert)
        key.write_bytes(pair.key)
        context.load_cert_chain(cert, key)
    return context


def generate(service_ip: str = "10.0.0.1", address: str = "127.0.0.1") -> ClusterPki:
    """A CA, a serving cert for loopback and `address`, an admin client cert (system:masters),
    the API server's client cert (to the kubelets and etcd), an SA key pair."""
    ca_key, ca_cert = _authority("tether-local-ca")
    ca_name = ca_cert.subject
    sans = [
        x509.DNSName("localhost"),
        x509.DNSName("kubernetes"),
        x509.DNSName("kubernetes.default.svc"),
        x509.DNSName("kubernetes.default.svc.cluster.local"),
        *{x509.IPAddress(ipaddress.ip_address(ip)) for ip in ("127.0.0.1", address, service_ip)},
    ]
    serving = _leaf(ca_key, ca_name, _name("kube-apiserver"), ExtendedKeyUsageOID.SERVER_AUTH, sans)
    admin = _leaf(
        ca_key, ca_name, _name("tether-admin", "system:masters"), ExtendedKeyUsageOID.CLIENT_AUTH
    )
    kubelet_client = _leaf(
        ca_key,
        ca_name,
        _name("kube-apiserver-kubelet-client", "system:masters"),
        ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    sa_key = _key()
    return ClusterPki(
        ca=KeyPair(ca_cert.public_bytes(serialization.Encoding.PEM), _pem_key(ca_key)),
        serving=serving,
        admin=admin,
        kubelet_client=kubelet_client,
        service_account_key=_pem_key(sa_key),
        service_account_pub=sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )


@dataclass(frozen=True)
class NodePki:
    """A kubelet's identity: a client cert the Node authorizer knows, and a serving cert."""

    client: KeyPair
    serving: KeyPair


def node(ca: KeyPair, name: str, ip: str) -> NodePki:
    """Certificates for node `name` at `ip`, signed by the cluster CA, as a real node holds."""
    ca_key, ca_name = _signer(ca)
    client = _leaf(
        ca_key,
        ca_name,
        _name(f"system:node:{name}", "system:nodes"),
        ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    sans = [x509.DNSName(name), x509.IPAddress(ipaddress.ip_address(ip))]
    serving = _leaf(ca_key, ca_name, _name(name), ExtendedKeyUsageOID.SERVER_AUTH, sans)
    return NodePki(client=client, serving=serving)
