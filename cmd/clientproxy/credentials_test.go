package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadPIN: a PIN file (its line end trimmed), else CLIENTPROXY_PIN,
// which is then gone from the environment, else — with no terminal to
// ask on — an error that says how to give one.
func TestReadPIN(t *testing.T) {
	f := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(f, []byte("12 34\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if pin, err := readPIN(f); err != nil || string(pin) != "12 34" {
		t.Fatalf("from a file: %q %v", pin, err)
	}
	t.Setenv("CLIENTPROXY_PIN", "5678")
	if pin, err := readPIN(""); err != nil || string(pin) != "5678" {
		t.Fatalf("from the environment: %q %v", pin, err)
	}
	if _, ok := os.LookupEnv("CLIENTPROXY_PIN"); ok {
		t.Fatal("CLIENTPROXY_PIN stays in the environment")
	}
	// go test's stdin is not a terminal.
	if _, err := readPIN(""); err == nil || !strings.Contains(err.Error(), "--pin-file") {
		t.Fatalf("without a PIN: %v", err)
	}
}

// TestTokenAndKeyFileConflict: one user, one source.
func TestTokenAndKeyFileConflict(t *testing.T) {
	_, _, err := loadCredentials(&config{pkcs11Module: "/x.so", userCert: "u.crt", userKey: "u.key"}, nil)
	if err == nil || !strings.Contains(err.Error(), "pick one") {
		t.Fatalf("got %v", err)
	}
}
