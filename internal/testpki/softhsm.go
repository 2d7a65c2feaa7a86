package testpki

import (
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// SoftHSMModule is Debian's SoftHSM PKCS#11 module.
const SoftHSMModule = "/usr/lib/softhsm/libsofthsm2.so"

// SoftHSM is a SoftHSM token with a configuration and token directory of
// its own: processes that use it need Env.
type SoftHSM struct {
	Conf, Label, PIN string
}

// NewSoftHSM makes a token labelled label with user PIN pin in dir.
func NewSoftHSM(dir, label, pin string) (*SoftHSM, error) {
	tokens := filepath.Join(dir, "tokens")
	if err := os.MkdirAll(tokens, 0o700); err != nil {
		return nil, err
	}
	h := &SoftHSM{Conf: filepath.Join(dir, "softhsm2.conf"), Label: label, PIN: pin}
	conf := "directories.tokendir = " + tokens + "\nobjectstore.backend = file\nlog.level = ERROR\n"
	if err := os.WriteFile(h.Conf, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	return h, h.run("softhsm2-util", "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", pin+"-so")
}

// Env is the environment that points SoftHSM at this token's directory.
func (h *SoftHSM) Env() []string { return []string{"SOFTHSM2_CONF=" + h.Conf} }

func (h *SoftHSM) run(name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), h.Env()...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// ImportKey puts a private key (PKCS #8 PEM file) on the token with id
// (hex) and label, as a card's key is.
func (h *SoftHSM) ImportKey(keyFile, idHex, label string) error {
	return h.run("softhsm2-util", "--import", keyFile, "--token", h.Label, "--label", label, "--id", idHex, "--pin", h.PIN)
}

// ImportCert puts a certificate (PEM file) on the token with id and label.
func (h *SoftHSM) ImportCert(certFile, idHex, label string) error {
	b, err := os.ReadFile(certFile)
	if err != nil {
		return err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return fmt.Errorf("%s: no PEM certificate", certFile)
	}
	der := certFile + ".der"
	if err := os.WriteFile(der, block.Bytes, 0o600); err != nil {
		return err
	}
	return h.run("pkcs11-tool", "--module", SoftHSMModule, "--token-label", h.Label, "--login", "--pin", h.PIN,
		"--write-object", der, "--type", "cert", "--id", idHex, "--label", label)
}

// Card is a token shaped like a Portuguese Citizen Card: a user key and
// certificate (subject serialNumber and name, clientAuth) issued by a
// sub-CA under a root, with the sub-CA's and root's certificates on the
// token too, under the card's labels.
type Card struct {
	*SoftHSM
	Root, SubCA *CA
	Cert, Key   string // the user's certificate and key files
	Serial      string
}

// Labels of a Citizen Card's authentication key and certificate.
const (
	CardKeyLabel  = "CITIZEN AUTHENTICATION KEY" // as token.CitizenAuthenticationKey
	CardCertLabel = "CITIZEN AUTHENTICATION CERTIFICATE"
)

// NewCard makes a card in dir with a key of keyType ("ec" or "rsa:2048")
// for the citizen serial (e.g. BI12345678) and name.
func NewCard(dir, keyType, serial, name, pin string) (*Card, error) {
	root, err := NewCA(dir, "Test Cartao de Cidadao Root")
	if err != nil {
		return nil, err
	}
	sub, err := root.SubCA(dir, "Test Cartao de Cidadao Authentication 0001")
	if err != nil {
		return nil, err
	}
	cert, key, err := sub.IssueKey("citizen", "/C=PT/serialNumber="+serial+"/CN="+name, keyType, ClientExt)
	if err != nil {
		return nil, err
	}
	hsm, err := NewSoftHSM(filepath.Join(dir, "hsm"), "CARTAO DE CIDADAO", pin)
	if err != nil {
		return nil, err
	}
	for _, step := range []func() error{
		func() error { return hsm.ImportKey(key, "45", CardKeyLabel) },
		func() error { return hsm.ImportCert(cert, "45", CardCertLabel) },
		func() error { return hsm.ImportCert(sub.Cert, "51", "AUTHENTICATION SUB CA") },
		func() error { return hsm.ImportCert(root.Cert, "52", "ROOT CA") },
	} {
		if err := step(); err != nil {
			return nil, err
		}
	}
	return &Card{SoftHSM: hsm, Root: root, SubCA: sub, Cert: cert, Key: key, Serial: serial}, nil
}
