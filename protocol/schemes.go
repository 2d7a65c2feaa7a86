package protocol

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"slices"
)

// A signature scheme is how a key signs a message (§9, §17): the key
// type, the hash and, for RSA, the padding. Names are TLS 1.3's. The
// server always signs with the scheme its key implies (RSA: PSS); a client
// credential may also use RSA PKCS #1 v1.5, the only RSA signature the
// Portuguese Citizen Cards issued until 2024 can make.
type scheme struct {
	name  string
	hash  crypto.Hash // 0: the message itself (Ed25519)
	fits  func(crypto.PublicKey) bool
	pss   bool // RSA: PSS with a salt as long as the hash; else PKCS #1 v1.5
	curve elliptic.Curve
}

const (
	schemeEd25519   = "ed25519"
	schemeECDSAP256 = "ecdsa_secp256r1_sha256"
	schemeECDSAP384 = "ecdsa_secp384r1_sha384"
	schemeRSAPSS    = "rsa_pss_rsae_sha256"
	schemeRSAPKCS1  = "rsa_pkcs1_sha256"
)

func isRSA(pub crypto.PublicKey) bool { _, ok := pub.(*rsa.PublicKey); return ok }

func isCurve(c elliptic.Curve) func(crypto.PublicKey) bool {
	return func(pub crypto.PublicKey) bool { k, ok := pub.(*ecdsa.PublicKey); return ok && k.Curve == c }
}

// schemes, in the order a client prefers them for a key.
var schemes = []scheme{
	{name: schemeEd25519, fits: func(pub crypto.PublicKey) bool { _, ok := pub.(ed25519.PublicKey); return ok }},
	{name: schemeECDSAP256, hash: crypto.SHA256, fits: isCurve(elliptic.P256())},
	{name: schemeECDSAP384, hash: crypto.SHA384, fits: isCurve(elliptic.P384())},
	{name: schemeRSAPSS, hash: crypto.SHA256, fits: isRSA, pss: true},
	{name: schemeRSAPKCS1, hash: crypto.SHA256, fits: isRSA},
}

// signatureSchemes are the names of the signature schemes a server accepts
// from clients: all of them, in the order a client prefers them.
func signatureSchemes() []string {
	names := make([]string, len(schemes))
	for i, s := range schemes {
		names[i] = s.name
	}
	return names
}

var errScheme = errors.New("signature scheme")

func schemeNamed(name string) (scheme, error) {
	i := slices.IndexFunc(schemes, func(s scheme) bool { return s.name == name })
	if i < 0 {
		return scheme{}, fmt.Errorf("%w: unknown %w %q", ErrMalformed, errScheme, name)
	}
	return schemes[i], nil
}

// serverScheme is the scheme a server key signs with.
func serverScheme(pub crypto.PublicKey) (scheme, error) {
	if err := CheckKey(pub); err != nil {
		return scheme{}, err
	}
	for _, s := range schemes {
		if s.fits(pub) {
			return s, nil // the first: PSS for RSA
		}
	}
	return scheme{}, fmt.Errorf("%w: %T", ErrUnsupportedKey, pub)
}

// chooseScheme picks the first scheme that fits the signer's key, that
// the server accepts and that the signer can make (a signer with a method
// SignatureSchemes() []string makes those only).
func chooseScheme(signer crypto.Signer, accepted []string) (scheme, error) {
	pub := signer.Public()
	var signerSchemes []string
	if l, ok := signer.(interface{ SignatureSchemes() []string }); ok {
		signerSchemes = l.SignatureSchemes()
	}
	if err := CheckKey(pub); err != nil {
		return scheme{}, err
	}
	for _, s := range schemes {
		if s.fits(pub) && slices.Contains(accepted, s.name) && (signerSchemes == nil || slices.Contains(signerSchemes, s.name)) {
			return s, nil
		}
	}
	return scheme{}, fmt.Errorf("no signature scheme for a %s key that both the server (accepts %v) and the key (can make %v) allow",
		keyDescription(pub), accepted, signerSchemes)
}

func keyDescription(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return "Ed25519"
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA-%d", k.N.BitLen())
	}
	return fmt.Sprintf("%T", pub)
}

// sign signs msg with signer under s.
func (s scheme) sign(signer crypto.Signer, msg []byte) ([]byte, error) {
	if s.hash == 0 {
		return signer.Sign(rand.Reader, msg, crypto.Hash(0))
	}
	d := s.hash.New()
	d.Write(msg)
	var opts crypto.SignerOpts = s.hash
	if s.pss {
		opts = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: s.hash}
	}
	return signer.Sign(rand.Reader, d.Sum(nil), opts)
}

// verify checks a signature over msg by pub under s; pub must fit s and
// meet the key rule.
func (s scheme) verify(pub crypto.PublicKey, msg, sig []byte) error {
	if err := CheckKey(pub); err != nil {
		return err
	}
	if !s.fits(pub) {
		return fmt.Errorf("%w: a %s key cannot sign with %s", errBadSignature, keyDescription(pub), s.name)
	}
	ok := false
	if s.hash == 0 {
		ok = ed25519.Verify(pub.(ed25519.PublicKey), msg, sig)
	} else {
		d := s.hash.New()
		d.Write(msg)
		digest := d.Sum(nil)
		switch k := pub.(type) {
		case *ecdsa.PublicKey:
			ok = ecdsa.VerifyASN1(k, digest, sig)
		case *rsa.PublicKey:
			if s.pss {
				ok = rsa.VerifyPSS(k, s.hash, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
			} else {
				ok = rsa.VerifyPKCS1v15(k, s.hash, digest, sig) == nil
			}
		}
	}
	if !ok {
		return errBadSignature
	}
	return nil
}
