"""`mpc keys init` and `mpc ca ...` end to end, as a member's IT department and the
federation's operator run them: private keys stay with their owner (mode 600), the CA
certifies only well-formed requests, revokes, and signs the federation file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mpc.config.federation import inline_public_key
from mpc.transport.tls import cert_info

MEMBERS = {"hospital_a": "party", "dealer": "dealer", "coordinator": "coordinator"}


def mpc(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mpc", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def ok(cwd: Path, *args: str) -> str:
    proc = mpc(cwd, *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_members_keys_certified_revoked_and_the_federation_signed(tmp_path: Path) -> None:
    # Each member, at home: keys that never leave, a request to send.
    for name, role in MEMBERS.items():
        out = ok(tmp_path, "keys", "init", "--name", name, "--role", role, "--out",
                 f"{name}-keys")
        keys = tmp_path / f"{name}-keys"
        assert mode(keys / f"{name}.key") == 0o600
        assert mode(keys / f"{name}.sign.key") == 0o600
        assert f"{name}.csr" in out and f"{name}.sign.pub" in out
        assert "never leave" in out
        csr = x509.load_pem_x509_csr((keys / f"{name}.csr").read_bytes())
        assert csr.is_signature_valid
        assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == name
        assert csr.subject.get_attributes_for_oid(
            NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == role
    again = mpc(tmp_path, "keys", "init", "--name", "hospital_a", "--role", "party", "--out",
                "hospital_a-keys")
    assert again.returncode == 2 and "never overwritten" in again.stderr

    # The operator: a CA, a certificate per request.
    ok(tmp_path, "ca", "init", "--out", "ca")
    assert mode(tmp_path / "ca" / "ca.key") == 0o600
    assert (tmp_path / "ca" / "ca.pem").exists() and (tmp_path / "ca" / "crl.pem").exists()
    for name, role in MEMBERS.items():
        out = ok(tmp_path, "ca", "sign", f"{name}-keys/{name}.csr", "--ca", "ca", "--days", "30",
                 "--out", f"ca/{name}.pem")
        info = cert_info((tmp_path / "ca" / f"{name}.pem").read_bytes())
        assert (info.name, info.role) == (name, role)
        assert info.fingerprint in out and "serial" in out

    # The federation file names the certificates and the audit keys the members sent.
    def entry(name: str) -> str:
        key = inline_public_key(tmp_path / f"{name}-keys" / f"{name}.sign.pub")
        return f'cert = "ca/{name}.pem"\nsigning_public_key = "{key}"\n'
    fed = tmp_path / "federation.toml"
    fed.write_text('ca = "ca/ca.pem"\n[coordinator]\nname = "coordinator"\n'
                   f'{entry("coordinator")}[dealer]\nname = "dealer"\n'
                   f'address = "127.0.0.1:7100"\n{entry("dealer")}'
                   f'[parties.hospital_a]\naddress = "127.0.0.1:7101"\n{entry("hospital_a")}',
                   encoding="utf-8")
    unsigned = mpc(tmp_path, "audit", "verify", "--federation", "federation.toml", "x.jsonl")
    assert unsigned.returncode == 2 and "federation.toml: signature: the file is not signed" \
        in unsigned.stderr
    out = ok(tmp_path, "ca", "sign-federation", "federation.toml", "--ca", "ca")
    assert (tmp_path / "federation.toml.sig").exists() and "federation.toml.sig" in out
    log = tmp_path / "x.jsonl"
    log.write_text("", encoding="utf-8")
    signed = mpc(tmp_path, "audit", "verify", "--federation", "federation.toml", "x.jsonl")
    assert signed.returncode == 1 and "holds no complete entry" in signed.stdout  # loaded

    # Tampered with: refused, naming the file.
    fed.write_text(fed.read_text().replace("7101", "7102"), encoding="utf-8")
    tampered = mpc(tmp_path, "audit", "verify", "--federation", "federation.toml", "x.jsonl")
    assert tampered.returncode == 2
    assert "federation.toml: signature: refused: the file was changed after the CA signed it" \
        in tampered.stderr

    # Revoked: on the CRL, and the federation may not list it any more.
    out = ok(tmp_path, "ca", "revoke", "ca/hospital_a.pem", "--ca", "ca")
    serial = f"{cert_info((tmp_path / 'ca' / 'hospital_a.pem').read_bytes()).serial:X}"
    assert f"hospital_a (serial {serial}" in out and "is revoked" in out
    crl = x509.load_pem_x509_crl((tmp_path / "ca" / "crl.pem").read_bytes())
    assert [r.serial_number for r in crl] == [int(serial, 16)]
    refused = mpc(tmp_path, "ca", "sign-federation", "federation.toml", "--ca", "ca")
    assert refused.returncode == 2
    assert f"certificate of hospital_a (serial {serial}) is revoked" in refused.stderr


def test_a_request_with_a_bad_name_or_role_is_refused(tmp_path: Path) -> None:
    bad_role = mpc(tmp_path, "keys", "init", "--name", "hospital_a", "--role", "admin", "--out",
                   "k")
    assert bad_role.returncode == 2 and "unknown role 'admin'" in bad_role.stderr
    assert not (tmp_path / "k" / "hospital_a.key").exists()
    ok(tmp_path, "ca", "init", "--out", "ca")
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "party"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "../hospital a")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(
        ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    (tmp_path / "bad.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    proc = mpc(tmp_path, "ca", "sign", "bad.csr", "--ca", "ca", "--out", "bad.pem")
    assert proc.returncode == 2 and "invalid member name" in proc.stderr
    assert not (tmp_path / "bad.pem").exists()


def test_certs_says_it_is_for_development(tmp_path: Path) -> None:
    out = ok(tmp_path, "certs", "--out", "certs", "--parties", "hospital_a")
    assert ("development only: every private key made in one place; for a real federation "
            "use mpc keys init and mpc ca sign") in " ".join(out.split())
    assert "Development only" in ok(tmp_path, "certs", "--help")
