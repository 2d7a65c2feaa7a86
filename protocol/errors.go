package protocol

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// Sentinel errors. Each has a stable code (ErrorCode) that the server puts
// in the Drm-Error response header so the client can react (rekey, new
// handshake) without parsing prose.
var (
	ErrMalformed      = errors.New("malformed message")
	errVersion        = errors.New("unsupported protocol version")
	errNoCommonSuite  = errors.New("no common cipher suite")
	errUnknownSuite   = errors.New("unknown cipher suite")
	errKeyShare       = errors.New("bad or missing key share")
	errBadSignature   = errors.New("signature does not verify")
	errCertificate    = errors.New("server certificate not trusted")
	ErrUnsupportedKey = errors.New("unsupported key: want Ed25519, ECDSA P-256/P-384 or RSA of at least 2048 bits")
	ErrWrongEndpoint  = errors.New("the server is another endpoint")
	ErrAuthentication = errors.New("message authentication failed")
	ErrReplay         = errors.New("replayed or too old sequence number")
	ErrUnknownSession = errors.New("unknown or expired session")
	ErrEpochRetired   = errors.New("key epoch retired")
	ErrRekeyRequired  = errors.New("key epoch limit reached: rekey required")
	ErrWrongMessage   = errors.New("message type does not match the endpoint")
	// ErrCredentialsRequired: the session must present credentials
	// (client auth) first; ErrCredentialRefused: one it presented failed.
	ErrCredentialsRequired = errors.New("credentials required")
	ErrCredentialRefused   = errors.New("credential refused")
	errMediaID             = errors.New("invalid media id")
	ErrUnexpectedReply     = errors.New("reply does not answer the request")

	// Conditions of the server and its origin, with wire codes so that a
	// client can tell them apart.
	ErrNotFound      = errors.New("no such media")
	ErrOutOfRange    = errors.New("chunk past the end of the media")
	ErrBusy          = errors.New("server holds too many sessions")
	ErrForbidden     = errors.New("only the drm protocol is served here; media are not available in the clear")
	ErrOrigin        = errors.New("origin failed")
	ErrOriginTimeout = errors.New("origin timed out")

	// Licenses (§21). ErrPaymentRequired: the license of the medium is
	// used up or expired (a 402 whose body is a PaymentRequired);
	// ErrRenewalDenied: a renewal was asked for and refused;
	// ErrTooManyPlays: the user already holds as many open plays as the
	// site allows.
	ErrPaymentRequired = errors.New("payment required")
	ErrRenewalDenied   = errors.New("renewal denied")
	ErrTooManyPlays    = errors.New("too many plays at once")

	// ErrNoManifest: the medium has no (valid) manifest at the origin
	// (§22): the answer to a manifest request for it and, where the site
	// requires manifests, to its chunk requests.
	ErrNoManifest = errors.New("the medium has no manifest")
)

type wireError struct {
	err    error
	code   string
	status int
}

// errorCodes gives each sentinel its wire code and the HTTP status a
// server refuses with (§4): 4xx for what the client sent or must fix,
// 502/504 for the origin's trouble, 503 for a full server.
var errorCodes = []wireError{
	// First: a refused credential wraps the verifier's error, which may
	// wrap anything.
	{ErrCredentialRefused, "credential-refused", 403},
	{ErrCredentialsRequired, "credentials-required", 403},
	{ErrMalformed, "malformed", 400},
	{errVersion, "version", 400},
	{errNoCommonSuite, "no-common-suite", 400},
	{errUnknownSuite, "unknown-suite", 400},
	{errKeyShare, "key-share", 400},
	{ErrAuthentication, "authentication", 403},
	{ErrReplay, "replay", 409},
	{ErrUnknownSession, "unknown-session", 403},
	{ErrEpochRetired, "epoch-retired", 409},
	{ErrRekeyRequired, "rekey-required", 409},
	{ErrWrongMessage, "wrong-message", 400},
	{errMediaID, "media-id", 400},
	{ErrNotFound, "not-found", 404},
	{ErrOutOfRange, "out-of-range", 416},
	{ErrBusy, "busy", 503},
	{ErrForbidden, "forbidden", 403},
	{ErrOrigin, "origin", 502},
	{ErrOriginTimeout, "origin-timeout", 504},
	{ErrPaymentRequired, "payment-required", 402},
	{ErrRenewalDenied, "renewal-denied", 402},
	{ErrTooManyPlays, "too-many-plays", 409},
	{ErrNoManifest, "no-manifest", 404},
}

// privateDetails are the conditions whose details (origin paths,
// upstreams, file names) belong in the server's log: the client gets the
// condition's fixed text.
var privateDetails = []error{ErrOrigin, ErrOriginTimeout, ErrNotFound, ErrOutOfRange, ErrNoManifest}

// maxReasonSize bounds the reason a server sends: an error can quote what
// the client sent (its suites, a media id), and the header must not grow
// with it. It holds the longest reason worth keeping whole, a
// no-common-suite refusal listing the default suites.
const maxReasonSize = 384

// Refusal is how a server refuses a request because of err (§4): the
// HTTP status, and the code and reason of the Drm-Error header ("code:
// reason"). The reason is err's text with control characters replaced,
// cut to maxReasonSize bytes. An error that wraps no sentinel is the
// server's own fault, never the client's: 500, "internal: internal error".
func Refusal(err error) (status int, code, reason string) {
	i := slices.IndexFunc(errorCodes, func(c wireError) bool { return errors.Is(err, c.err) })
	if i < 0 {
		return 500, "internal", "internal error"
	}
	reason = err.Error()
	for _, private := range privateDetails {
		if errors.Is(err, private) {
			reason = private.Error()
			break
		}
	}
	// An error that knows what the client may be told (a refused
	// credential: the reason, not the certificate's details) says it.
	var public interface{ PublicReason() string }
	if errors.As(err, &public) {
		reason = public.PublicReason()
	}
	reason = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, reason)
	if len(reason) > maxReasonSize {
		cut := maxReasonSize - len("…")
		for !utf8.RuneStart(reason[cut]) {
			cut--
		}
		reason = reason[:cut] + "…"
	}
	return errorCodes[i].status, errorCodes[i].code, reason
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
const offeredShown = 2

func (e *noCommonSuiteError) Error() string {
	offered := strings.Join(e.Offered[:min(len(e.Offered), offeredShown)], " ")
	if n := len(e.Offered) - offeredShown; n > 0 {
		offered += fmt.Sprintf(" and %d more", n)
	}
	return fmt.Sprintf("no common cipher suite: server accepts [%s], client offered [%s]",
		strings.Join(e.Supported, " "), offered)
}

func (e *noCommonSuiteError) Unwrap() error { return errNoCommonSuite }
