package token

import "errors"

// Options select a token and a key.
type Options struct {
	// Module is the path of the PKCS#11 library: the Citizen Card
	// middleware's libpteidpkcs11.so, OpenSC's opensc-pkcs11.so, ykcs11,
	// libsofthsm2.so.
	Module string
	// TokenLabel selects the token by its label; Slot by slot id. With
	// neither, the first token present.
	TokenLabel string
	Slot       *uint
}

// CitizenAuthenticationKey is the label of a Portuguese Citizen Card's
// authentication key, which Credential prefers when no label is given.
const CitizenAuthenticationKey = "CITIZEN AUTHENTICATION KEY"

// The failures a user can act on, each its own.
var (
	ErrNoModule  = errors.New("cannot load the PKCS#11 module")
	ErrNoToken   = errors.New("no token")
	ErrWrongPIN  = errors.New("wrong PIN")
	ErrPINLocked = errors.New("the PIN is locked")
	ErrNoKey     = errors.New("no key to sign with")
	ErrNoCgo     = errors.New("this clientproxy was built without cgo, which PKCS#11 tokens need (build it with CGO_ENABLED=1: make clientproxy)")
)
