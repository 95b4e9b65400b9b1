"""Certificates for a Dask cluster that admits only its own machines: a CA and one certificate per machine.

Dask's TLS (distributed.Security) lets a scheduler, worker or client in only when it shows a
certificate signed by the cluster's CA, and encrypts all they exchange. This module makes
such a CA and signs machine certificates with it, as `cnnkit certs` writes them to a folder:

- ca.pem: the CA's certificate, for every machine (--tls-ca-file).
- ca-key.pem: the CA's private key (0600); stays on the machine that makes certificates.
- HOST.pem, HOST-key.pem (0600): HOST's certificate and key (--tls-cert, --tls-key), for the
  scheduler or worker on HOST; `client` is the one for the machine that runs `cnnkit sweep`.

Keys are ECDSA P-256. Each machine certificate names its host as a subject alternative
name and is valid for TLS servers and clients alike (a worker both listens and connects).
"""
import datetime
import ipaddress
import re
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cnnkit._files import atomic_write

CA_NAME = "cnnkit sweep cluster CA"
CLIENT = "client"  # the certificate of the machine running `cnnkit sweep`
DAYS = 365
HOSTNAME = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?$")


def new_ca(days=DAYS):
    """(private key, certificate) of a new self-signed CA that may sign machine certificates only."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
    builder = (_builder(name, name, key.public_key(), days)
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(_key_usage(cert_sign=True), critical=True))
    return key, builder.sign(key, hashes.SHA256())


def new_certificate(ca_key, ca_cert, name, hosts=(), days=DAYS):
    """(private key, certificate) for `name`, signed by the CA, for TLS servers and clients.

    hosts: the IP addresses and DNS names the machine is reached at (subject alternative names).
    """
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (_builder(subject, ca_cert.subject, key.public_key(), days)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(_key_usage(cert_sign=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                     ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                              critical=False))
    if hosts:
        builder = builder.add_extension(x509.SubjectAlternativeName([_general_name(host) for host in hosts]),
                                        critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def write_cluster_certificates(folder, hosts, days=DAYS):
    """Write the CA (unless folder holds one already, which is then used) and the certificates of hosts and CLIENT.

    Returns the list of paths written. Raises ValueError for a host that is neither an IP
    address nor a DNS name, or when folder's ca.pem and ca-key.pem do not belong together.
    """
    for host in hosts:
        check_host(host)
        if host in ("ca", CLIENT):
            raise ValueError(f"{host!r} names the folder's {host}.pem already; give the machine's address or full name")
    folder = Path(folder)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    written = []
    if (folder / "ca.pem").exists() or (folder / "ca-key.pem").exists():
        ca_key, ca_cert = load_ca(folder)
    else:
        ca_key, ca_cert = new_ca(days)
        written += _write_pair(folder, "ca", ca_key, ca_cert)
    for name, names in [*((host, [host]) for host in dict.fromkeys(hosts)), (CLIENT, [])]:
        written += _write_pair(folder, name, *new_certificate(ca_key, ca_cert, name, names, days))
    return written


def load_ca(folder):
    """(private key, certificate) of the CA in folder's ca-key.pem and ca.pem; ValueError if they do not match."""
    folder = Path(folder)
    ca_cert = x509.load_pem_x509_certificate((folder / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((folder / "ca-key.pem").read_bytes(), password=None)
    if ca_key.public_key() != ca_cert.public_key():
        raise ValueError(f"{folder / 'ca-key.pem'} is not the key of {folder / 'ca.pem'}")
    return ca_key, ca_cert


def check_host(host):
    """host, if it is an IP address or a DNS name; else ValueError."""
    if not (_is_ip(host) or HOSTNAME.match(host)):
        raise ValueError(f"expected an IP address or a DNS name, got {host!r}")
    return host


def _builder(subject, issuer, public_key, days):
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))  # machines' clocks differ a little
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))


def _key_usage(cert_sign):
    return x509.KeyUsage(digital_signature=not cert_sign, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign, crl_sign=cert_sign,
                         encipher_only=False, decipher_only=False)


def _general_name(host):
    return x509.IPAddress(ipaddress.ip_address(host)) if _is_ip(host) else x509.DNSName(host)


def _is_ip(host):
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _write_pair(folder, name, key, cert):
    """Write name.pem (the certificate) and name-key.pem (the key, 0600); return their paths."""
    cert_path, key_path = folder / f"{name}.pem", folder / f"{name}-key.pem"
    with atomic_write(key_path, mode=0o600) as file:
        file.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    with atomic_write(cert_path) as file:
        file.write(cert.public_bytes(serialization.Encoding.PEM))
    return [cert_path, key_path]
