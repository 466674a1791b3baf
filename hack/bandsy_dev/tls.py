"""A throwaway certificate authority for the local servers (API server, PostgreSQL) and the
hosts the test stand-in for cert-manager issues (certificate_issuer)."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

_VALIDITY = datetime.timedelta(days=30)


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def write_key(key: rsa.RSAPrivateKey, path: Path) -> None:
    path.write_bytes(key_pem(key))
    path.chmod(0o600)


def write_public_key(key: rsa.RSAPrivateKey, path: Path) -> None:
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


@dataclass(frozen=True)
class CertificateAuthority:
    key: rsa.RSAPrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, common_name: str = "bandsy-local-ca") -> CertificateAuthority:
        key = new_key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def write_cert(self, path: Path) -> None:
        path.write_bytes(self.cert_pem())

    def issue_server_cert(
        self,
        cert_path: Path,
        key_path: Path,
        common_name: str,
        ips: tuple[str, ...] = (),
        dns_names: tuple[str, ...] = (),
    ) -> None:
        """A serving certificate valid for localhost, the loopback addresses and the given
        extra addresses and names."""
        names: list[x509.GeneralName] = [
            x509.DNSName("localhost"),
            *(x509.DNSName(n) for n in dns_names),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
            *(x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips),
        ]
        self._issue(cert_path, key_path, x509.Name([_cn(common_name)]), names)

    def issue_client_cert(
        self, cert_path: Path, key_path: Path, common_name: str, organization: str
    ) -> None:
        """A client certificate: user ``common_name`` in group ``organization``."""
        subject = x509.Name(
            [_cn(common_name), x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)]
        )
        self._issue(cert_path, key_path, subject, [])

    def _issue(
        self, cert_path: Path, key_path: Path, subject: x509.Name, names: list[x509.GeneralName]
    ) -> None:
        key, cert = self._sign(subject, names)
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        write_key(key, key_path)

    def issue_for_hosts(self, hosts: Sequence[str]) -> tuple[bytes, bytes]:
        """A serving certificate for exactly these DNS names (no localhost, no addresses), as
        (certificate PEM, key PEM): what a Secret of type kubernetes.io/tls holds."""
        names: list[x509.GeneralName] = [x509.DNSName(h) for h in hosts]
        key, cert = self._sign(x509.Name([_cn(hosts[0])]), names)
        return cert.public_bytes(serialization.Encoding.PEM), key_pem(key)

    def _sign(
        self, subject: x509.Name, names: list[x509.GeneralName]
    ) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
        key = new_key()
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return key, builder.sign(self.key, hashes.SHA256())


def _cn(common_name: str) -> x509.NameAttribute[str]:
    return x509.NameAttribute(NameOID.COMMON_NAME, common_name)
