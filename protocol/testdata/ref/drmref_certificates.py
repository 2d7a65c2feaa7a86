"""drmref §6 certificates: parsing DER X.509, checking a chain, leaf first,
against the client's pinned root, and the leaf's key, of a type §9 allows."""

import calendar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from drmref_encoding import ProtocolError
from drmref_signatures import server_signature_parameters


# §6 certificates: "X.509 certificate chain, DER, leaf first; at least one;
# verified against the client's pinned root; the leaf's key checks the
# signature". X.509 itself is not this protocol: only what a client needs to
# find the leaf's key and to tie the chain to its pinned root is here (no
# validity dates, name or extension checks: §6 names none).

# The certificate signature algorithms this check can verify: those of the
# §9 key types (with the usual X.509 hashes) and RSA PKCS#1 v1.5.
_X509_ED25519 = "1.3.101.112"


def parse_certificate(der):
    """One DER certificate; ErrCertificate (client side) if it does not parse."""
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError as err:
        raise ProtocolError("certificate", f"certificate does not parse: {err}") from None


def certificate_signed_by(cert, issuer_public_key):
    """The X.509 signature of cert verifies under the issuer's key."""
    try:
        if cert.signature_algorithm_oid.dotted_string == _X509_ED25519:
            if not isinstance(issuer_public_key, ed25519.Ed25519PublicKey):
                return False
            issuer_public_key.verify(cert.signature, cert.tbs_certificate_bytes)
            return True
        hash_ = cert.signature_hash_algorithm
        if isinstance(issuer_public_key, ec.EllipticCurvePublicKey):
            issuer_public_key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hash_))
            return True
        if isinstance(issuer_public_key, rsa.RSAPublicKey):
            issuer_public_key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), hash_)
            return True
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return False


def certificate_not_after(cert):
    """The end of the certificate's validity, in Unix seconds."""
    return calendar.timegm(cert.not_valid_after.utctimetuple())


def is_self_signed(cert):
    return cert.issuer == cert.subject and certificate_signed_by(cert, cert.public_key())


def verify_certificate_chain(chain_der, pinned_root_der):
    """§6: the chain, leaf first, leads to the pinned root (each certificate
    issued and signed by the next; the last is the pinned root itself or is
    signed by it); returns the leaf's public key, which must be of a type §9
    allows. Raises ProtocolError("certificate") (ErrCertificate)."""
    if not chain_der:
        raise ProtocolError("certificate", "no certificates")
    chain = [parse_certificate(der) for der in chain_der]
    root = parse_certificate(pinned_root_der)
    for cert, issuer in zip(chain, chain[1:]):
        if cert.issuer != issuer.subject or not certificate_signed_by(cert, issuer.public_key()):
            subject = cert.subject.rfc4514_string()
            raise ProtocolError("certificate", f"{subject} is not signed by the next certificate")
    last = chain[-1]
    if chain_der[-1] != pinned_root_der and (
        last.issuer != root.subject or not certificate_signed_by(last, root.public_key())
    ):
        raise ProtocolError("certificate", "the chain does not lead to the pinned root")
    leaf_key = chain[0].public_key()
    server_signature_parameters(leaf_key)  # §9: refuses the other key types
    return leaf_key


def public_key_bytes(public_key):
    """The key as a DER SubjectPublicKeyInfo, to compare keys of any type."""
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return public_key.public_bytes(serialization.Encoding.DER, spki)
