//go:build cgo

// Package token signs with a user's key on a PKCS#11 token — a Portuguese
// Citizen Card through its middleware or OpenSC, a YubiKey through ykcs11,
// SoftHSM in tests — so that the key never leaves the token. It needs cgo
// (the module is a C library); without cgo, Open says so.
package token

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"strings"
	"sync"

	"github.com/miekg/pkcs11"
)

// Token is an open, logged-in session on a token. Close ends it.
type Token struct {
	p       *pkcs11.Ctx
	session pkcs11.SessionHandle
	label   string

	mu sync.Mutex // a PKCS#11 session is not safe for concurrent use
}

// Open loads the module, finds the token, opens a session and logs in
// with the PIN pin returns (called once, only once a token was found).
func Open(opts Options, pin func() ([]byte, error)) (*Token, error) {
	if _, err := os.Stat(opts.Module); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNoModule, opts.Module, err)
	}
	p := pkcs11.New(opts.Module)
	if p == nil {
		return nil, fmt.Errorf("%w: %s does not load as a PKCS#11 module", ErrNoModule, opts.Module)
	}
	if err := p.Initialize(); err != nil && !isCode(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		p.Destroy()
		return nil, fmt.Errorf("%w: %s: %v", ErrNoModule, opts.Module, err)
	}
	t := &Token{p: p}
	if err := t.open(opts, pin); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

func (t *Token) open(opts Options, pin func() ([]byte, error)) error {
	slot, label, err := findSlot(t.p, opts)
	if err != nil {
		return err
	}
	t.label = label
	if t.session, err = t.p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION); err != nil {
		return describe(err, t.label, 0)
	}
	code, err := pin()
	if err != nil {
		return fmt.Errorf("the PIN of token %q: %w", label, err)
	}
	defer clear(code)
	if err := t.p.Login(t.session, pkcs11.CKU_USER, string(code)); err != nil && !isCode(err, pkcs11.CKR_USER_ALREADY_LOGGED_IN) {
		flags := uint(0)
		if info, ierr := t.p.GetTokenInfo(slot); ierr == nil {
			flags = info.Flags
		}
		return describe(err, label, flags)
	}
	return nil
}

// findSlot finds the token by label or slot id among those present.
func findSlot(p *pkcs11.Ctx, opts Options) (uint, string, error) {
	slots, err := p.GetSlotList(true)
	if err != nil {
		return 0, "", describe(err, opts.TokenLabel, 0)
	}
	var present []string
	for _, s := range slots {
		info, err := p.GetTokenInfo(s)
		if err != nil {
			continue
		}
		label := strings.TrimRight(info.Label, " \x00")
		present = append(present, fmt.Sprintf("%q (slot %d)", label, s))
		if opts.Slot != nil && *opts.Slot == s || opts.Slot == nil && (opts.TokenLabel == "" || opts.TokenLabel == label) {
			return s, label, nil
		}
	}
	want := fmt.Sprintf("labelled %q", opts.TokenLabel)
	if opts.Slot != nil {
		want = fmt.Sprintf("in slot %d", *opts.Slot)
	} else if opts.TokenLabel == "" {
		want = "at all"
	}
	if len(present) == 0 {
		return 0, "", fmt.Errorf("%w %s: the module sees none (is the card inserted, the reader plugged in?)", ErrNoToken, want)
	}
	return 0, "", fmt.Errorf("%w %s; present: %s", ErrNoToken, want, strings.Join(present, ", "))
}

// Credential finds the key to sign with — the one labelled keyLabel, or
// the first private key with a certificate of the same id — and returns
// a signer for it and its certificate chain: the certificate, then the
// CA certificates on the token that lead from it towards a root (roots
// excluded).
func (t *Token) Credential(keyLabel string) (crypto.Signer, [][]byte, error) {
	if keyLabel == "" {
		// A Citizen Card holds a signature key too: its authentication key
		// is the one that proves who listens.
		if s, chain, err := t.Credential(CitizenAuthenticationKey); err == nil {
			return s, chain, nil
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	template := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY)}
	if keyLabel != "" {
		template = append(template, pkcs11.NewAttribute(pkcs11.CKA_LABEL, keyLabel))
	}
	keys, err := t.find(template)
	if err != nil {
		return nil, nil, err
	}
	certs, err := t.certificates()
	if err != nil {
		return nil, nil, err
	}
	for _, key := range keys {
		attrs, err := t.p.GetAttributeValue(t.session, key, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ID, nil)})
		if err != nil {
			continue
		}
		for _, c := range certs {
			if len(c.id) > 0 && bytes.Equal(c.id, attrs[0].Value) {
				return t.signer(key, c.cert), chainFrom(c.cert, certs), nil
			}
		}
	}
	if keyLabel != "" {
		return nil, nil, fmt.Errorf("%w: no private key labelled %q with a certificate of the same id on token %q", ErrNoKey, keyLabel, t.label)
	}
	return nil, nil, fmt.Errorf("%w: no private key with a certificate of the same id on token %q", ErrNoKey, t.label)
}

type tokenCert struct {
	id   []byte
	cert *x509.Certificate
}

func (t *Token) certificates() ([]tokenCert, error) {
	objs, err := t.find([]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_CERTIFICATE)})
	if err != nil {
		return nil, err
	}
	var out []tokenCert
	for _, o := range objs {
		attrs, err := t.p.GetAttributeValue(t.session, o, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_ID, nil), pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)})
		if err != nil {
			continue
		}
		cert, err := x509.ParseCertificate(attrs[1].Value)
		if err != nil {
			continue // not X.509, or one Go does not read: not ours
		}
		out = append(out, tokenCert{attrs[0].Value, cert})
	}
	return out, nil
}

func (t *Token) find(template []*pkcs11.Attribute) ([]pkcs11.ObjectHandle, error) {
	if err := t.p.FindObjectsInit(t.session, template); err != nil {
		return nil, describe(err, t.label, 0)
	}
	defer t.p.FindObjectsFinal(t.session)
	var all []pkcs11.ObjectHandle
	for {
		objs, _, err := t.p.FindObjects(t.session, 16)
		if err != nil {
			return nil, describe(err, t.label, 0)
		}
		if len(objs) == 0 {
			return all, nil
		}
		all = append(all, objs...)
	}
}

// chainFrom is leaf and the certificates of certs that issued it, in
// order, up to (not including) a self-signed root.
func chainFrom(leaf *x509.Certificate, certs []tokenCert) [][]byte {
	chain := [][]byte{leaf.Raw}
	for cur := leaf; len(chain) < 6; {
		var next *x509.Certificate
		for _, c := range certs {
			if c.cert.IsCA && bytes.Equal(cur.RawIssuer, c.cert.RawSubject) && cur.CheckSignatureFrom(c.cert) == nil {
				next = c.cert
				break
			}
		}
		if next == nil || bytes.Equal(next.RawIssuer, next.RawSubject) {
			return chain
		}
		chain, cur = append(chain, next.Raw), next
	}
	return chain
}

// Close logs out and unloads the module.
func (t *Token) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.session != 0 {
		t.p.Logout(t.session)
		t.p.CloseSession(t.session)
		t.session = 0
	}
	t.p.Finalize()
	t.p.Destroy()
	return nil
}

// signer is a crypto.Signer whose key is on the token.
type signer struct {
	t   *Token
	key pkcs11.ObjectHandle
	pub crypto.PublicKey
}

func (t *Token) signer(key pkcs11.ObjectHandle, cert *x509.Certificate) *signer {
	return &signer{t: t, key: key, pub: cert.PublicKey}
}

func (s *signer) Public() crypto.PublicKey { return s.pub }

// SignatureSchemes are the only schemes the token makes: RSA PKCS #1 v1.5
// (what Citizen Cards sign) and ECDSA of the key's curve with its hash.
func (s *signer) SignatureSchemes() []string {
	switch k := s.pub.(type) {
	case *rsa.PublicKey:
		return []string{"rsa_pkcs1_sha256"}
	case *ecdsa.PublicKey:
		switch k.Curve.Params().BitSize {
		case 256:
			return []string{"ecdsa_secp256r1_sha256"}
		case 384:
			return []string{"ecdsa_secp384r1_sha384"}
		}
	}
	return []string{}
}

// sha256DigestInfo is the DER prefix of a SHA-256 DigestInfo (RFC 8017
// §9.2): CKM_RSA_PKCS signs what it is given, so the prefix makes it a
// PKCS #1 v1.5 SHA-256 signature — the mechanism every card has.
var sha256DigestInfo = []byte{0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20}

// Sign signs digest on the token: RSA PKCS #1 v1.5 with SHA-256, or
// ECDSA (CKM_ECDSA's raw r‖s, returned as ASN.1 as crypto.Signer does).
func (s *signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	var mech *pkcs11.Mechanism
	data := digest
	switch s.pub.(type) {
	case *rsa.PublicKey:
		if _, pss := opts.(*rsa.PSSOptions); pss || opts.HashFunc() != crypto.SHA256 {
			return nil, errors.New("token: the key signs RSA PKCS #1 v1.5 with SHA-256 only")
		}
		mech = pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil)
		data = append(append([]byte{}, sha256DigestInfo...), digest...)
	case *ecdsa.PublicKey:
		mech = pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)
	default:
		return nil, fmt.Errorf("token: cannot sign with a %T key", s.pub)
	}
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	if s.t.session == 0 {
		return nil, errors.New("token: closed")
	}
	if err := s.t.p.SignInit(s.t.session, []*pkcs11.Mechanism{mech}, s.key); err != nil {
		return nil, describe(err, s.t.label, 0)
	}
	sig, err := s.t.p.Sign(s.t.session, data)
	if err != nil {
		return nil, describe(err, s.t.label, 0)
	}
	if _, ok := s.pub.(*ecdsa.PublicKey); ok {
		return rawToASN1(sig)
	}
	return sig, nil
}

// rawToASN1 turns CKM_ECDSA's r‖s (each half the length) into the ASN.1
// SEQUENCE of two INTEGERs that ECDSA signatures travel as.
func rawToASN1(raw []byte) ([]byte, error) {
	if len(raw) == 0 || len(raw)%2 != 0 {
		return nil, fmt.Errorf("token: an ECDSA signature of %d bytes", len(raw))
	}
	half := len(raw) / 2
	return asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(raw[:half]), new(big.Int).SetBytes(raw[half:])})
}

func isCode(err error, code uint) bool {
	var e pkcs11.Error
	return errors.As(err, &e) && uint(e) == code
}

// describe turns a PKCS#11 error into what the user can act on.
func describe(err error, label string, flags uint) error {
	var e pkcs11.Error
	if !errors.As(err, &e) {
		return fmt.Errorf("token %q: %w", label, err)
	}
	return describeCode(uint(e), label, flags)
}

func describeCode(code uint, label string, flags uint) error {
	switch code {
	case pkcs11.CKR_PIN_INCORRECT:
		switch {
		case flags&pkcs11.CKF_USER_PIN_FINAL_TRY != 0:
			return fmt.Errorf("%w for token %q: one try left before the PIN locks", ErrWrongPIN, label)
		case flags&pkcs11.CKF_USER_PIN_COUNT_LOW != 0:
			return fmt.Errorf("%w for token %q: few tries left before the PIN locks", ErrWrongPIN, label)
		}
		return fmt.Errorf("%w for token %q", ErrWrongPIN, label)
	case pkcs11.CKR_PIN_LOCKED:
		return fmt.Errorf("%w: token %q (unblock it with the PUK, in the card's own tools)", ErrPINLocked, label)
	case pkcs11.CKR_PIN_LEN_RANGE:
		return fmt.Errorf("%w for token %q: it has the wrong length", ErrWrongPIN, label)
	case pkcs11.CKR_PIN_EXPIRED:
		return fmt.Errorf("the PIN of token %q has expired: change it in the card's own tools", label)
	case pkcs11.CKR_TOKEN_NOT_PRESENT, pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_SESSION_CLOSED:
		return fmt.Errorf("%w: token %q was removed", ErrNoToken, label)
	case pkcs11.CKR_TOKEN_NOT_RECOGNIZED:
		return fmt.Errorf("%w: the module does not recognize the token in the reader", ErrNoToken)
	}
	return fmt.Errorf("token %q: %s", label, pkcs11.Error(code).Error())
}
