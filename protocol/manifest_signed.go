package protocol

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"slices"
)

// signedManifestMsg is the signed manifest file (§22), what lives next to
// the medium at the origin as "<media file>.manifest".
type signedManifestMsg struct {
	Manifest  []byte   `json:"manifest"`
	Scheme    string   `json:"scheme"`
	Signature []byte   `json:"signature"`
	Chain     [][]byte `json:"chain"` // DER, leaf first
}

// manifestSignedContent is what a publisher signs: the context, then the
// SHA-256 of the manifest's bytes.
func manifestSignedContent(manifest []byte) []byte {
	sum := sha256.Sum256(manifest)
	return append([]byte(manifestSignatureContext), sum[:]...)
}

// SignManifest signs m with the publisher's key and returns the signed
// manifest file. chain is the publisher's certificate chain, DER, leaf
// first; the leaf must carry signer's public key. The scheme is the one
// the key implies (§9's first that fits: RSA signs with PSS).
func SignManifest(m *Manifest, signer crypto.Signer, chain [][]byte) ([]byte, error) {
	if err := m.checkFields(true); err != nil {
		return nil, err
	}
	if len(chain) == 0 || len(chain) > maxChainCerts || slices.ContainsFunc(chain, func(der []byte) bool { return len(der) == 0 }) {
		return nil, fmt.Errorf("protocol: a publisher chain of %d certificates (1 … %d, none empty)", len(chain), maxChainCerts)
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return nil, fmt.Errorf("protocol: the publisher certificate: %w", err)
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(leaf.PublicKey) {
		return nil, fmt.Errorf("protocol: the publisher certificate (%s) does not carry the signer's key", leaf.Subject)
	}
	sc, err := serverScheme(signer.Public())
	if err != nil {
		return nil, err
	}
	msg := signedManifestMsg{Manifest: m.marshal(), Scheme: sc.name, Chain: chain}
	if msg.Signature, err = sc.sign(signer, manifestSignedContent(msg.Manifest)); err != nil {
		return nil, fmt.Errorf("protocol: signing the manifest of %q: %w", m.ID, err)
	}
	out, err := json.Marshal(msg)
	if err != nil {
		return nil, err
	}
	if len(out) > maxSignedManifestSize {
		return nil, fmt.Errorf("protocol: the signed manifest of %q has %d bytes (at most %d)", m.ID, len(out), maxSignedManifestSize)
	}
	return out, nil
}

// OpenManifest parses a signed manifest file strictly, has verify check
// its publisher chain (the caller's policy: a content CA, the codeSigning
// extended key usage; it returns the verified leaf), checks the signature
// with that leaf's key, and returns the manifest with Publisher set. Every
// refusal wraps ErrManifest.
func OpenManifest(signed []byte, verify func(chain [][]byte) (*x509.Certificate, error)) (*Manifest, error) {
	msg, sc, err := parseSignedManifest(signed)
	if err != nil {
		return nil, err
	}
	if verify == nil {
		return nil, fmt.Errorf("%w: no publisher policy", ErrManifest)
	}
	leaf, err := verify(msg.Chain)
	if err != nil {
		return nil, fmt.Errorf("%w: publisher: %w", ErrManifest, err)
	}
	if leaf == nil {
		return nil, fmt.Errorf("%w: publisher: the policy returned no certificate", ErrManifest)
	}
	want, err := serverScheme(leaf.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("%w: publisher: %w", ErrManifest, err)
	}
	if want.name != sc.name {
		return nil, fmt.Errorf("%w: a %s publisher key signs with %s, not %s", ErrManifest, keyDescription(leaf.PublicKey), want.name, sc.name)
	}
	if err := sc.verify(leaf.PublicKey, manifestSignedContent(msg.Manifest), msg.Signature); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrManifest, err)
	}
	m, err := parseManifest(msg.Manifest)
	if err != nil {
		return nil, err
	}
	m.Publisher = leaf
	return m, nil
}

// parseSignedManifest decodes a signed manifest file: the canonical JSON
// of signedManifestMsg (§22), a scheme a publisher may sign with, bounded
// chain and signature.
func parseSignedManifest(b []byte) (*signedManifestMsg, scheme, error) {
	if len(b) > maxSignedManifestSize {
		return nil, scheme{}, fmt.Errorf("%w: a signed manifest of %d bytes (at most %d)", ErrManifest, len(b), maxSignedManifestSize)
	}
	var msg signedManifestMsg
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&msg); err != nil {
		return nil, scheme{}, fmt.Errorf("%w: %v", ErrManifest, err)
	}
	switch {
	case len(msg.Manifest) == 0:
		return nil, scheme{}, fmt.Errorf("%w: no manifest", ErrManifest)
	case len(msg.Chain) == 0 || len(msg.Chain) > maxChainCerts:
		return nil, scheme{}, fmt.Errorf("%w: a publisher chain of %d certificates", ErrManifest, len(msg.Chain))
	case slices.ContainsFunc(msg.Chain, func(der []byte) bool { return len(der) == 0 }):
		return nil, scheme{}, fmt.Errorf("%w: an empty certificate in the publisher chain", ErrManifest)
	case len(msg.Signature) == 0 || len(msg.Signature) > maxSignature:
		return nil, scheme{}, fmt.Errorf("%w: a signature of %d bytes", ErrManifest, len(msg.Signature))
	case msg.Scheme == schemeRSAPKCS1:
		return nil, scheme{}, fmt.Errorf("%w: publishers sign RSA with PSS, not %s", ErrManifest, msg.Scheme)
	}
	sc, err := schemeNamed(msg.Scheme)
	if err != nil {
		return nil, scheme{}, fmt.Errorf("%w: %w", ErrManifest, err)
	}
	if canonical, err := json.Marshal(msg); err != nil || !bytes.Equal(canonical, b) {
		return nil, scheme{}, fmt.Errorf("%w: the signed manifest is not in its canonical encoding (§22)", ErrManifest)
	}
	return &msg, sc, nil
}
