package main

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"golang.org/x/term"

	"github.com/caddy-drm/caddy-drm/keystore"
	"github.com/caddy-drm/caddy-drm/keystore/token"
	"github.com/caddy-drm/caddy-drm/protocol"
)

// loadCredentials loads the device and user credentials the flags name:
// files, or for the user a key on a PKCS#11 token (logged in once, here,
// before anything is served). closeToken logs out.
func loadCredentials(c *config, logger *slog.Logger) (creds []protocol.Credential, closeToken func(), err error) {
	closeToken = func() {}
	if c.pkcs11Module != "" && (c.userCert != "" || c.userKey != "") {
		return nil, closeToken, errors.New("--pkcs11-module and --user-cert/--user-key are two ways to give one user: pick one")
	}
	for _, f := range []struct {
		kind, cert, key string
	}{
		{protocol.CredentialDevice, c.deviceCert, c.deviceKey},
		{protocol.CredentialUser, c.userCert, c.userKey},
	} {
		if f.cert == "" && f.key == "" {
			continue
		}
		if f.cert == "" || f.key == "" {
			return nil, closeToken, fmt.Errorf("--%s-cert and --%s-key go together", f.kind, f.kind)
		}
		id, err := keystore.LoadIdentity(f.cert, f.key)
		if err != nil {
			return nil, closeToken, fmt.Errorf("%s credential: %w", f.kind, err)
		}
		cred := protocol.Credential{Kind: f.kind, Chain: id.Chain, Signer: id.Signer}
		if f.kind == protocol.CredentialUser {
			logger.Warn("the user's key is a file: whoever copies it is this user; a token keeps it (--pkcs11-module)", "user", id.Leaf.Subject.String())
			if cred.Chain, err = withChain(cred.Chain, c.userChain); err != nil {
				return nil, closeToken, err
			}
		}
		creds = append(creds, cred)
	}
	if c.pkcs11Module == "" {
		return creds, closeToken, nil
	}
	opts := token.Options{Module: c.pkcs11Module, TokenLabel: c.pkcs11Token}
	if c.pkcs11Slot >= 0 {
		slot := uint(c.pkcs11Slot)
		opts.Slot = &slot
	}
	tok, err := token.Open(opts, func() ([]byte, error) { return readPIN(c.pinFile) })
	if err != nil {
		return nil, closeToken, err
	}
	signer, chain, err := tok.Credential(c.pkcs11KeyLabel)
	if err == nil {
		chain, err = withChain(chain, c.userChain)
	}
	if err != nil {
		tok.Close()
		return nil, closeToken, err
	}
	logger.Info("the user's key is on the token", "module", c.pkcs11Module, "certificates", len(chain))
	return append(creds, protocol.Credential{Kind: protocol.CredentialUser, Chain: chain, Signer: signer}), func() { tok.Close() }, nil
}

// withChain appends the intermediates of file to chain, if any.
func withChain(chain [][]byte, file string) ([][]byte, error) {
	if file == "" {
		return chain, nil
	}
	extra, err := keystore.LoadCertificates(file)
	if err != nil {
		return nil, fmt.Errorf("--user-chain: %w", err)
	}
	return append(chain, extra...), nil
}

// readPIN reads the token's PIN from file, else CLIENTPROXY_PIN (which it
// then removes from the environment), else a prompt on the terminal that
// does not echo. The PIN is never a flag: flags show in process lists.
func readPIN(file string) ([]byte, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("--pin-file: %w", err)
		}
		return bytes.TrimRight(b, "\r\n"), nil
	}
	if pin, ok := os.LookupEnv("CLIENTPROXY_PIN"); ok {
		os.Unsetenv("CLIENTPROXY_PIN")
		return []byte(pin), nil
	}
	if !term.IsTerminal(int(os.Stdin.Fd())) {
		return nil, errors.New("no PIN: give --pin-file or CLIENTPROXY_PIN, or run clientproxy on a terminal to be asked")
	}
	fmt.Fprint(os.Stderr, "PIN of the token: ")
	pin, err := term.ReadPassword(int(os.Stdin.Fd()))
	fmt.Fprintln(os.Stderr)
	return pin, err
}
