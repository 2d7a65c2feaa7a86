package keystore

import (
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Revocation checks certificates against the complete and delta CRLs of
// their issuers (RFC 5280 section 5), read from files it watches. It is
// safe for concurrent use.
//
// Loading. Each file holds one or more CRLs, PEM ("X509 CRL" blocks) or a
// single DER CRL. A CRL counts only if one of the configured issuer CAs
// signed it: same subject as the CRL's issuer, same key identifier when
// both carry one, a signature that verifies, and the cRLSign key usage if
// the CA restricts its key usage. Refused, as the whole file: a CRL no
// configured CA signed, one without a CRL number, with a critical
// extension or entry extension this package does not process, an
// indirect CRL (indirectCRL, or entries naming a certificate issuer), a
// CRL partitioned by reason (onlySomeReasons), for attribute certificates,
// or named relative to its issuer, and removeFromCRL in a complete CRL.
//
// Reloading. On use, at most once per second of the clock, every file is
// stat'ed; a file whose size, modification time, device or inode changed,
// or whose modification time is too recent to trust (racyWindow), is read
// again and its content hash compared. A file that became missing or bad
// is treated as missing (its CRLs no longer count: fail closed) and
// reported once through OnReload, as is every successful re-read.
//
// Scopes. A CRL without an Issuing Distribution Point covers every
// certificate its issuer signed. One with it covers a certificate only if
// the flags allow (onlyContainsUserCerts: not a CA; onlyContainsCACerts: a
// CA) and, if it names distribution point URIs, the certificate's CRL
// Distribution Points name one of them; a certificate without CRL
// Distribution Points is then not covered. Complete and delta CRLs are
// grouped by issuer and scope.
//
// Within a scope the complete CRL with the highest CRL number counts, and
// the delta CRL (Delta CRL Indicator) with the highest number, if that
// number is above the complete CRL's (an older delta is already part of
// the complete CRL). The delta applies when its BaseCRLNumber is at most
// the complete CRL's number. Its entries add revocations, or replace the
// complete CRL's entry for the same serial; a removeFromCRL entry lifts a
// certificateHold of the complete CRL and nothing else (a final
// revocation is never undone). A delta whose base is above the complete
// CRL's number proves that CRL outdated: the scope is "CRL missing", but
// the entries of both still refuse what they list (a hold then stays).
//
// Verdict. An entry refuses the certificate ("revoked") whatever the
// freshness of its CRL: the CA signed it. The absence of an entry counts
// only if the complete CRL, and the applied delta, are fresh: now is not
// after their NextUpdate, which must be present; otherwise "CRL expired".
// No covering complete CRL is "CRL missing". When several scopes cover a
// certificate, an entry in any refuses it, else one fresh scope accepts
// it. For an issuer in optional, a missing or stale CRL is accepted, but
// a CRL that lists the certificate still refuses it.
type Revocation struct {
	now      func() time.Time
	issuers  []*x509.Certificate
	optional map[string]bool // by caKey

	mu       sync.Mutex
	files    []*crlFile
	checked  time.Time
	index    crlIndex
	onReload func(file string, err error)
}

// NewRevocation loads the CRL files (see Revocation for the rules) signed
// by issuers, the configured CA certificates. optional lists the CAs whose
// certificates pass when no fresh CRL covers them. now is the clock for
// freshness and for reloading (nil: time.Now). Any file that cannot be
// loaded is an error: a configuration to fix before serving.
func NewRevocation(files []string, issuers []*x509.Certificate, optional []*x509.Certificate, now func() time.Time) (*Revocation, error) {
	if now == nil {
		now = time.Now
	}
	r := &Revocation{now: now, issuers: issuers, optional: map[string]bool{}, checked: now()}
	for _, ca := range optional {
		r.optional[caKey(ca)] = true
	}
	for _, path := range files {
		f := &crlFile{path: path}
		if _, err := f.refresh(issuers, r.checked); err != nil {
			return nil, err
		}
		r.files = append(r.files, f)
	}
	r.index = buildIndex(r.files)
	return r, nil
}

// OnReload sets the function told of every file read again after
// NewRevocation: err is nil when its CRLs were replaced, or why the file
// is now treated as missing. It is called without locks held, from the
// goroutine that happened to trigger the reload.
func (r *Revocation) OnReload(report func(file string, err error)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.onReload = report
}

// Check refuses cert, signed by issuer, if the CRLs revoke it or cannot
// vouch for it (see Revocation) at the time of r's clock. Refusals are
// *CredentialError. VerifyClientChain calls it for every certificate of a
// path but the root.
func (r *Revocation) Check(cert, issuer *x509.Certificate) error {
	return r.checkPath([]*x509.Certificate{cert, issuer})
}

// checkPath checks every certificate of a verified path but its root,
// from the top down, so that a revoked intermediate is reported as such
// rather than through the CRLs it signed.
func (r *Revocation) checkPath(path []*x509.Certificate) error {
	now := r.now()
	index := r.refresh(now)
	for i := len(path) - 2; i >= 0; i-- {
		key := caKey(path[i+1])
		reason, err := index.status(key, path[i], now)
		if reason == "" || reason != ReasonRevoked && r.optional[key] {
			continue
		}
		return refuse(path[i], reason, err)
	}
	return nil
}

// refresh re-reads the files that may have changed if a second has passed
// since the last look (or the clock went back), and returns the index.
func (r *Revocation) refresh(now time.Time) crlIndex {
	type report struct {
		file string
		err  error
	}
	var reports []report
	r.mu.Lock()
	index, onReload := r.index, r.onReload
	if now.Sub(r.checked) >= time.Second || now.Before(r.checked) {
		r.checked = now
		changed := false
		for _, f := range r.files {
			if ch, err := f.refresh(r.issuers, now); ch {
				changed = true
				reports = append(reports, report{f.path, err})
			}
		}
		if changed {
			r.index = buildIndex(r.files)
			index = r.index
		}
	}
	r.mu.Unlock()
	if onReload != nil {
		for _, rep := range reports {
			onReload(rep.file, rep.err)
		}
	}
	return index
}

// caKey identifies a CA by name and key, so that a renewed certificate of
// the same CA, or an intermediate the client sent, matches the one
// configured. Both parts are DER, so the concatenation is unambiguous.
func caKey(ca *x509.Certificate) string {
	return string(ca.RawSubject) + string(ca.RawSubjectPublicKeyInfo)
}

// crlIndex holds the CRLs that count, by issuer (caKey), then by scope.
// It is rebuilt, never modified, so a reader may keep using an old one.
type crlIndex map[string][]*scopeCRLs

// scopeCRLs are the newest complete and delta CRLs of an issuer's scope.
type scopeCRLs struct {
	scope    scope
	complete *crl
	delta    *crl
}

func buildIndex(files []*crlFile) crlIndex {
	index := crlIndex{}
	for _, f := range files {
		for _, c := range f.crls {
			key := caKey(c.issuer)
			var s *scopeCRLs
			for _, have := range index[key] {
				if have.scope.key() == c.scope.key() {
					s = have
				}
			}
			if s == nil {
				s = &scopeCRLs{scope: c.scope}
				index[key] = append(index[key], s)
			}
			newest := &s.complete
			if c.base != nil {
				newest = &s.delta
			}
			if *newest == nil || c.number.Cmp((*newest).number) > 0 {
				*newest = c
			}
		}
	}
	return index
}

// status is the verdict of the CRLs of issuer (caKey) on cert at now: ""
// when it passes, else the reason and why.
func (index crlIndex) status(issuer string, cert *x509.Certificate, now time.Time) (CredentialReason, error) {
	var stale, missing error
	covered := false
	for _, s := range index[issuer] {
		if !s.scope.covers(cert) {
			continue
		}
		switch reason, err := s.status(cert, now); reason {
		case ReasonRevoked:
			return reason, err
		case "":
			covered = true
		case ReasonCRLExpired:
			stale = errors.Join(stale, err)
		default:
			missing = errors.Join(missing, err)
		}
	}
	switch {
	case covered:
		return "", nil
	case stale != nil:
		return ReasonCRLExpired, stale
	case missing != nil:
		return ReasonCRLMissing, missing
	}
	return ReasonCRLMissing, fmt.Errorf("no loaded CRL of its issuer covers it (CRL distribution points %q)", cert.CRLDistributionPoints)
}

// status is the verdict of one scope's CRLs on cert (see Revocation).
func (s *scopeCRLs) status(cert *x509.Certificate, now time.Time) (CredentialReason, error) {
	serial := cert.SerialNumber.String()
	complete, delta := s.complete, s.delta
	if delta != nil && complete != nil && delta.number.Cmp(complete.number) <= 0 {
		delta = nil // already part of the complete CRL
	}
	applies := delta != nil && complete != nil && delta.base.Cmp(complete.number) <= 0

	var entry crlEntry
	var from *crl
	if complete != nil {
		if e, ok := complete.entries[serial]; ok {
			entry, from = e, complete
		}
	}
	if delta != nil {
		if e, ok := delta.entries[serial]; ok {
			switch {
			case e.reason != reasonRemoveFromCRL:
				entry, from = e, delta
			case applies && from != nil && entry.reason == reasonCertificateHold:
				from = nil // the hold is lifted
			}
		}
	}
	switch {
	case from != nil:
		return ReasonRevoked, fmt.Errorf("revoked at %s (%s) by %v",
			entry.at.UTC().Format(time.RFC3339), reasonName(entry.reason), from)
	case complete == nil:
		return ReasonCRLMissing, fmt.Errorf("no complete CRL, only %v", delta)
	case delta != nil && !applies:
		return ReasonCRLMissing, fmt.Errorf("%v is older than the base of %v", complete, delta)
	}
	for _, c := range []*crl{complete, delta} {
		switch {
		case c == nil:
		case c.nextUpdate.IsZero():
			return ReasonCRLExpired, fmt.Errorf("%v has no next update: its freshness is unknown", c)
		case now.After(c.nextUpdate):
			return ReasonCRLExpired, fmt.Errorf("%v: next update was due %s", c, c.nextUpdate.UTC().Format(time.RFC3339))
		}
	}
	return "", nil
}
