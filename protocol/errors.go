package protocol

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Each has a stable code (ErrorCode) that the server puts
// in the Drm-Error response header so the client can react (rekey, new
// handshake) without parsing prose.
var (
	ErrMalformed       = errors.New("malformed message")
	errVersion         = errors.New("unsupported protocol version")
	errNoCommonSuite   = errors.New("no common cipher suite")
	errUnknownSuite    = errors.New("unknown cipher suite")
	errKeyShare        = errors.New("bad or missing key share")
	errBadSignature    = errors.New("server signature does not verify")
	errCertificate     = errors.New("server certificate not trusted")
	ErrUnsupportedKey  = errors.New("unsupported key: want Ed25519, ECDSA P-256/P-384 or RSA of at least 2048 bits")
	ErrWrongEndpoint   = errors.New("the server is another endpoint")
	ErrAuthentication  = errors.New("message authentication failed")
	ErrReplay          = errors.New("replayed or too old sequence number")
	ErrUnknownSession  = errors.New("unknown or expired session")
	ErrEpochRetired    = errors.New("key epoch retired")
	ErrRekeyRequired   = errors.New("key epoch limit reached: rekey required")
	ErrWrongMessage    = errors.New("message type does not match the endpoint")
	errMediaID         = errors.New("invalid media id")
	ErrUnexpectedReply = errors.New("reply does not answer the request")

	// Conditions of the server and its origin, with wire codes so that a
	// client can tell them apart.
	ErrNotFound      = errors.New("no such media")
	ErrOutOfRange    = errors.New("chunk past the end of the media")
	ErrBusy          = errors.New("server holds too many sessions")
	ErrForbidden     = errors.New("only the drm protocol is served here; media are not available in the clear")
	ErrOrigin        = errors.New("origin failed")
	ErrOriginTimeout = errors.New("origin timed out")
)

var errorCodes = []struct {
	err  error
	code string
}{
	{ErrMalformed, "malformed"},
	{errVersion, "version"},
	{errNoCommonSuite, "no-common-suite"},
	{errUnknownSuite, "unknown-suite"},
	{errKeyShare, "key-share"},
	{ErrAuthentication, "authentication"},
	{ErrReplay, "replay"},
	{ErrUnknownSession, "unknown-session"},
	{ErrEpochRetired, "epoch-retired"},
	{ErrRekeyRequired, "rekey-required"},
	{ErrWrongMessage, "wrong-message"},
	{errMediaID, "media-id"},
	{ErrNotFound, "not-found"},
	{ErrOutOfRange, "out-of-range"},
	{ErrBusy, "busy"},
	{ErrForbidden, "forbidden"},
	{ErrOrigin, "origin"},
	{ErrOriginTimeout, "origin-timeout"},
}

// ErrorCode returns the stable wire code of err's sentinel, or "" if err
// wraps none of them.
func ErrorCode(err error) string {
	for _, c := range errorCodes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return ""
}

// ErrorFromCode turns a Drm-Error header value ("code: reason") back into
// an error wrapping the code's sentinel, so clients can use errors.Is. Its
// message is the server's reason (which already names the sentinel).
func ErrorFromCode(header string) error {
	code, reason, _ := strings.Cut(header, ":")
	code, reason = strings.TrimSpace(code), strings.TrimSpace(reason)
	for _, c := range errorCodes {
		if c.code == code {
			if reason == "" {
				reason = c.err.Error()
			}
			return &remoteError{sentinel: c.err, reason: reason}
		}
	}
	return fmt.Errorf("unknown error code: %s", header)
}

// remoteError is a refusal as the server worded it.
type remoteError struct {
	sentinel error
	reason   string
}

func (e *remoteError) Error() string { return e.reason }
func (e *remoteError) Unwrap() error { return e.sentinel }

// noCommonSuiteError names both lists so an operator can see at once why
// negotiation failed: the server's first, then the start of the client's
// offer (which can be long, and is the client's own words).
type noCommonSuiteError struct {
	Offered, Supported []string
}

// offeredShown bounds how many of the client's suites the message quotes.
const offeredShown = 4

func (e *noCommonSuiteError) Error() string {
	offered := strings.Join(e.Offered[:min(len(e.Offered), offeredShown)], " ")
	if n := len(e.Offered) - offeredShown; n > 0 {
		offered += fmt.Sprintf(" and %d more", n)
	}
	return fmt.Sprintf("no common cipher suite: server accepts [%s], client offered [%s]",
		strings.Join(e.Supported, " "), offered)
}

func (e *noCommonSuiteError) Unwrap() error { return errNoCommonSuite }
