//go:build !cgo

package token

import "crypto"

// Token is unavailable without cgo.
type Token struct{}

// Open fails: PKCS#11 modules are C libraries.
func Open(Options, func() ([]byte, error)) (*Token, error) { return nil, ErrNoCgo }

// Credential is never reached without cgo.
func (*Token) Credential(string) (crypto.Signer, [][]byte, error) { return nil, nil, ErrNoCgo }

// Close does nothing.
func (*Token) Close() error { return nil }
