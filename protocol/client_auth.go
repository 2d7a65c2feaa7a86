package protocol

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Client authentication (§17). When the server's policy asks, the client
// sends, sealed under the session's keys, a MsgClientAuth request with its
// certificate chains and, for each, a signature over the epoch's
// transcript hash and all the chains it sends (as TLS 1.3's
// CertificateVerify): a signature is good for this session, this epoch and
// these credentials only, so it cannot be replayed into another session or
// moved to another chain. The device's key then signs every rekey.

// Credential kinds.
const (
	CredentialDevice = "device"
	CredentialUser   = "user"
)

var credentialKinds = []string{CredentialDevice, CredentialUser}

// signatureContext separates each kind's signatures from every other use
// of its key.
func signatureContext(kind string) string {
	if kind == CredentialDevice {
		return deviceSignatureContext
	}
	return userSignatureContext
}

// ClientAuthPolicy is what a server asks of its clients.
type ClientAuthPolicy struct {
	// Require lists the credentials a session must present before it is
	// served anything but its catalog (if CatalogFirst) and its close.
	Require []string
	// Authorities are the subjects (DER) of the CAs each required kind
	// must chain to, announced so that a client picks the right
	// credential and fails early when it has none.
	Authorities map[string][][]byte
	// Verify checks a credential's chain for kind — path to one of the
	// kind's CAs, key usage, revocation — and returns its leaf. An error
	// with a PublicReason method tells the client only that.
	Verify func(kind string, chain [][]byte) (*x509.Certificate, error)
	// CatalogFirst lets a session read the catalog before its credentials
	// are verified.
	CatalogFirst bool
}

// check is NewServer's check of a policy.
func (p *ClientAuthPolicy) check() error {
	if p == nil || len(p.Require) == 0 {
		return nil
	}
	if p.Verify == nil {
		return errors.New("protocol: a client-auth policy without a verifier")
	}
	for i, k := range p.Require {
		if !slices.Contains(credentialKinds, k) || slices.Contains(p.Require[:i], k) {
			return fmt.Errorf("protocol: cannot require credential %q (want device and/or user, once each)", k)
		}
		if len(p.Authorities[k]) == 0 {
			return fmt.Errorf("protocol: no certificate authority for %s credentials", k)
		}
	}
	return nil
}

// credentialMsg is one credential of a MsgClientAuth request.
type credentialMsg struct {
	Kind      string   `json:"kind"`
	Chain     [][]byte `json:"chain"` // DER, leaf first
	Scheme    string   `json:"scheme"`
	Signature []byte   `json:"signature"`
}

// clientAuthMsg is the payload of a MsgClientAuth request.
type clientAuthMsg struct {
	Credentials []credentialMsg `json:"credentials"`
}

const (
	// maxChainCerts bounds a credential's chain (leaf, intermediates, and
	// a root some clients send along).
	maxChainCerts = 6
	maxSignature  = 1024
)

func parseClientAuth(b []byte) (*clientAuthMsg, error) {
	var m clientAuthMsg
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: client auth: %v", ErrMalformed, err)
	}
	if len(m.Credentials) == 0 || len(m.Credentials) > len(credentialKinds) {
		return nil, fmt.Errorf("%w: client auth with %d credentials", ErrMalformed, len(m.Credentials))
	}
	for i, c := range m.Credentials {
		switch {
		case !slices.Contains(credentialKinds, c.Kind):
			return nil, fmt.Errorf("%w: unknown credential kind %.32q", ErrMalformed, c.Kind)
		case slices.ContainsFunc(m.Credentials[:i], func(o credentialMsg) bool { return o.Kind == c.Kind }):
			return nil, fmt.Errorf("%w: two %s credentials", ErrMalformed, c.Kind)
		case len(c.Chain) == 0 || len(c.Chain) > maxChainCerts:
			return nil, fmt.Errorf("%w: a %s chain of %d certificates", ErrMalformed, c.Kind, len(c.Chain))
		case slices.ContainsFunc(c.Chain, func(der []byte) bool { return len(der) == 0 }):
			return nil, fmt.Errorf("%w: an empty certificate in the %s chain", ErrMalformed, c.Kind)
		case len(c.Signature) == 0 || len(c.Signature) > maxSignature:
			return nil, fmt.Errorf("%w: a %s signature of %d bytes", ErrMalformed, c.Kind, len(c.Signature))
		}
		if _, err := schemeNamed(c.Scheme); err != nil {
			return nil, err
		}
	}
	return &m, nil
}

// credentialsHash binds the signatures to the epoch and to every chain
// sent: H(clientAuthContext ‖ transcript hash ‖ for each credential in
// order: uint8 len ‖ kind ‖ uint8 count ‖ (uint32 len ‖ certificate)…).
func credentialsHash(h crypto.Hash, transcript []byte, creds []credentialMsg) []byte {
	d := h.New()
	d.Write([]byte(clientAuthContext))
	d.Write(transcript)
	for _, c := range creds {
		d.Write([]byte{byte(len(c.Kind))})
		d.Write([]byte(c.Kind))
		d.Write([]byte{byte(len(c.Chain))})
		for _, der := range c.Chain {
			d.Write(binary.BigEndian.AppendUint32(nil, uint32(len(der))))
			d.Write(der)
		}
	}
	return d.Sum(nil)
}

// credentialContent is what a credential's key signs.
func credentialContent(kind string, credsHash []byte) []byte {
	return append([]byte(signatureContext(kind)), credsHash...)
}

// rekeyContent is what the device key signs in a rekey request: the
// previous epoch's transcript hash and the request's fresh values.
func rekeyContent(h crypto.Hash, transcript, random, share []byte) []byte {
	d := h.New()
	d.Write(transcript)
	d.Write(random)
	d.Write(share)
	return append([]byte(deviceRekeyContext), d.Sum(nil)...)
}

// credentialError is a refused credential. Its Error names everything
// for the server's log; PublicReason is what the client is told.
type credentialError struct {
	kind string
	err  error
}

func (e *credentialError) Error() string {
	return fmt.Sprintf("%s: %s credential: %v", ErrCredentialRefused, e.kind, e.err)
}

func (e *credentialError) Unwrap() []error { return []error{ErrCredentialRefused, e.err} }

func (e *credentialError) PublicReason() string {
	reason := "refused"
	var pr interface{ PublicReason() string }
	switch {
	case errors.As(e.err, &pr):
		reason = pr.PublicReason()
	case errors.Is(e.err, errBadSignature):
		reason = "bad signature"
	}
	return fmt.Sprintf("%s credential: %s", e.kind, reason)
}

// Credential is a client's certificate chain and the key that signs for
// it: a software key, or a key on a token that never leaves it.
type Credential struct {
	Kind  string   // CredentialDevice or CredentialUser
	Chain [][]byte // DER, leaf first, then the intermediates the server may lack
	// Signer signs for the leaf. One that can make only some schemes (a
	// Citizen Card's RSA key makes only rsa_pkcs1_sha256) says so with a
	// method SignatureSchemes() []string.
	Signer crypto.Signer
}

// CredentialsRequested are the credentials the server requires of this
// session (none: the server authenticates no client).
func (s *ClientSession) CredentialsRequested() []string { return slices.Clone(s.requested) }

// NewClientAuthRequest seals a MsgClientAuth request with the credentials
// the server requested, picked from creds. It fails, before anything is
// sent, when one is missing, when the server does not accept its CA, or
// when no signature scheme suits both. Once it is built, the session signs
// its rekeys with the device credential's key.
func (s *ClientSession) NewClientAuthRequest(creds []Credential) (*Request, error) {
	var chosen []Credential
	var schemesFor []scheme
	for _, kind := range s.requested {
		i := slices.IndexFunc(creds, func(c Credential) bool { return c.Kind == kind })
		if i < 0 {
			return nil, fmt.Errorf("%w: the server requires a %s credential, and none is configured", ErrCredentialsRequired, kind)
		}
		c := creds[i]
		if err := s.acceptsIssuer(kind, c.Chain); err != nil {
			return nil, err
		}
		sc, err := chooseScheme(c.Signer, s.schemes)
		if err != nil {
			return nil, fmt.Errorf("%s credential: %w", kind, err)
		}
		chosen, schemesFor = append(chosen, c), append(schemesFor, sc)
	}
	if len(chosen) == 0 {
		return nil, errors.New("protocol: the server requested no credential")
	}
	var signErr error
	r := s.newRequestWith(MsgClientAuth, func(transcript []byte) []byte {
		msg := clientAuthMsg{}
		for i, c := range chosen {
			msg.Credentials = append(msg.Credentials, credentialMsg{Kind: c.Kind, Chain: c.Chain, Scheme: schemesFor[i].name})
		}
		h := credentialsHash(s.suite.hash, transcript, msg.Credentials)
		for i, c := range chosen {
			sig, err := schemesFor[i].sign(c.Signer, credentialContent(c.Kind, h))
			if err != nil {
				signErr = fmt.Errorf("%s credential: signing: %w", c.Kind, err)
				return nil
			}
			msg.Credentials[i].Signature = sig
		}
		b, _ := json.Marshal(msg)
		return b
	})
	if signErr != nil {
		return nil, signErr
	}
	if n := len(r.Envelope()); n > MaxRequestSize {
		return nil, fmt.Errorf("%w: the credentials make a request of %d bytes, more than %d (fewer intermediates?)", ErrMalformed, n, MaxRequestSize)
	}
	for i, c := range chosen {
		if c.Kind == CredentialDevice {
			s.mu.Lock()
			s.device, s.deviceScheme = c.Signer, schemesFor[i]
			s.mu.Unlock()
		}
	}
	return r, nil
}

// acceptsIssuer fails early when the server announced CAs for kind and
// the chain names none of them (as its issuer or its subject).
func (s *ClientSession) acceptsIssuer(kind string, chain [][]byte) error {
	cas := s.authorities[kind]
	if len(cas) == 0 {
		return nil
	}
	var names []string
	for _, der := range chain {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("%s credential: %w", kind, err)
		}
		for _, ca := range cas {
			if bytes.Equal(cert.RawIssuer, ca) || bytes.Equal(cert.RawSubject, ca) {
				return nil
			}
		}
		names = append(names, cert.Issuer.String())
	}
	var accepted []string
	for _, ca := range cas {
		accepted = append(accepted, rdnString(ca))
	}
	return fmt.Errorf("%w: the server does not accept this %s certificate's issuer %s (it accepts %s)",
		ErrCredentialRefused, kind, names[0], strings.Join(accepted, "; "))
}

// Authenticate answers an accepted MsgClientAuth request: each
// credential's chain is verified by the policy and its signature over
// the credentials hash by its leaf's key; the session then records them
// and is served. A refused credential refuses the request and leaves the
// session as it was.
func (s *ServerSession) Authenticate(a *Accepted) ([]byte, error) {
	if err := a.answer(MsgClientAuth); err != nil {
		return nil, err
	}
	p := s.policy
	s.mu.Lock()
	done, transcript := s.credentials != nil, bytes.Clone(a.keys.transcript)
	s.mu.Unlock()
	switch {
	case p == nil || len(p.Require) == 0:
		return nil, fmt.Errorf("%w: this server authenticates no client", ErrWrongMessage)
	case done:
		return nil, fmt.Errorf("%w: the session's credentials were already verified", ErrMalformed)
	}
	msg := a.clientAuth
	for _, kind := range p.Require {
		if !slices.ContainsFunc(msg.Credentials, func(c credentialMsg) bool { return c.Kind == kind }) {
			return nil, fmt.Errorf("%w: a %s credential", ErrCredentialsRequired, kind)
		}
	}
	h := credentialsHash(s.suite.hash, transcript, msg.Credentials)
	verified := map[string]*verifiedCredential{}
	for _, c := range msg.Credentials {
		if !slices.Contains(p.Require, c.Kind) {
			return nil, fmt.Errorf("%w: a %s credential the server did not request", ErrMalformed, c.Kind)
		}
		leaf, err := p.Verify(c.Kind, c.Chain)
		if err != nil {
			return nil, &credentialError{c.Kind, err}
		}
		sc, _ := schemeNamed(c.Scheme) // parseClientAuth checked the name
		if err := sc.verify(leaf.PublicKey, credentialContent(c.Kind, h), c.Signature); err != nil {
			return nil, &credentialError{c.Kind, err}
		}
		verified[c.Kind] = &verifiedCredential{leaf: leaf, chain: c.Chain, scheme: sc}
	}
	s.mu.Lock()
	s.credentials = verified
	s.mu.Unlock()
	reply, _ := json.Marshal(map[string][]string{"verified": p.Require})
	rh := replyHeader{Type: MsgClientAuth, Epoch: a.header.Epoch, Seq: a.header.Seq}
	s.count(a.keys, len(reply))
	return s.seal(nil, a.keys, &rh, "", reply), nil
}

// verifiedCredential is a credential a session presented.
type verifiedCredential struct {
	leaf   *x509.Certificate
	chain  [][]byte
	scheme scheme
}

// Credential returns the verified leaf certificate of kind, or nil.
func (s *ServerSession) Credential(kind string) *x509.Certificate {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.credentials[kind]; c != nil {
		return c.leaf
	}
	return nil
}

// served reports whether the session may be served a request of type t:
// with a policy, only its credentials, its close and, if allowed, its
// catalog come before the credentials are verified. s.mu must be held.
func (s *ServerSession) servedLocked(t MessageType) error {
	p := s.policy
	if p == nil || len(p.Require) == 0 || s.credentials != nil {
		return nil
	}
	switch {
	case t == MsgClientAuth, t == MsgClose, t == MsgCatalog && p.CatalogFirst:
		return nil
	}
	return fmt.Errorf("%w: %s — send them first (client auth)", ErrCredentialsRequired, strings.Join(p.Require, " and "))
}

// rekeyAuthorized checks, for a session whose credentials were verified,
// that its device's key (if it has one) signed the rekey, and that the
// credentials still verify: a certificate revoked or expired since the
// session began stops it at its next epoch. It runs without the session's
// lock: verifying a chain may read CRL files.
func (s *ServerSession) rekeyAuthorized(old *epochKeys, req *rekeyRequestMsg) error {
	s.mu.Lock()
	creds := s.credentials
	transcript := bytes.Clone(old.transcript) // retire wipes it
	s.mu.Unlock()
	if creds == nil {
		return nil
	}
	if dev := creds[CredentialDevice]; dev != nil {
		sc, err := schemeNamed(req.DeviceScheme)
		if err != nil || len(req.DeviceSignature) == 0 {
			return &credentialError{CredentialDevice, errors.New("the rekey is not signed by the session's device key")}
		}
		if err := sc.verify(dev.leaf.PublicKey, rekeyContent(s.suite.hash, transcript, req.Random, req.KeyShare), req.DeviceSignature); err != nil {
			return &credentialError{CredentialDevice, fmt.Errorf("the rekey's device signature: %w", err)}
		}
	}
	for _, kind := range credentialKinds { // in a fixed order: one refusal, always the same
		if c := creds[kind]; c != nil {
			if _, err := s.policy.Verify(kind, c.chain); err != nil {
				return &credentialError{kind, err}
			}
		}
	}
	return nil
}

// rdnString renders a DER subject for people.
func rdnString(der []byte) string {
	var rdn pkix.RDNSequence
	if rest, err := asn1.Unmarshal(der, &rdn); err != nil || len(rest) > 0 {
		return fmt.Sprintf("(unreadable name of %d bytes)", len(der))
	}
	var name pkix.Name
	name.FillFromRDNSequence(&rdn)
	return name.String()
}
