package sealing

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/caddy-drm/caddy-drm/protocol"
)

// publisher is a self-signed manifest signer (ownLeaf trusts it).
type publisher struct {
	signer crypto.Signer
	chain  [][]byte
}

func newPublisher(t testing.TB) publisher {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "publisher"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return publisher{key, [][]byte{der}}
}

// media makes deterministic contents of n bytes.
func mediaBytes(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7+i>>9) ^ seed
	}
	return b
}

// writeTree writes files (by slash path) under a new folder.
func writeTree(t testing.TB, files map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func isAudio(p string) bool {
	switch path.Ext(filepath.ToSlash(p)) {
	case ".flac", ".opus", ".wav":
		return true
	}
	return false
}

func options(pub publisher, rs ...age.Recipient) Options {
	return Options{Recipients: rs, Signer: pub.signer, Chain: pub.chain, Jobs: 3, IsMedium: isAudio,
		Info: func(rel string) protocol.MediaInfo {
			return protocol.MediaInfo{ContentType: "audio/test", Duration: 1.5}
		}}
}

func mustSeal(t testing.TB, src, dst string, opts Options) Result {
	t.Helper()
	res, err := SealTree(context.Background(), src, dst, opts)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// decryptAll opens dst/rel.age with ids through DecryptReaderAt and
// returns its plaintext.
func decryptAll(t testing.TB, dst, rel string, ids ...age.Identity) []byte {
	t.Helper()
	f, err := os.Open(filepath.Join(dst, filepath.FromSlash(rel)+".age"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	ra, size, err := age.DecryptReaderAt(f, fi.Size(), ids...)
	if err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	b, err := io.ReadAll(io.NewSectionReader(ra, 0, size))
	if err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	return b
}

// readManifest opens dst/rel.manifest.
func readManifest(t testing.TB, dst, rel string) *protocol.Manifest {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dst, filepath.FromSlash(rel)+".manifest"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := protocol.OpenManifest(b, ownLeaf)
	if err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	return m
}

// checkMatches checks that m vouches for data, block by block.
func checkMatches(t testing.TB, m *protocol.Manifest, data []byte) {
	t.Helper()
	if m.Size != int64(len(data)) {
		t.Fatalf("%s: manifest size %d, plaintext %d", m.ID, m.Size, len(data))
	}
	first, last := m.Blocks(0, m.Size)
	for i := first; i <= last; i++ {
		s, e, _ := m.BlockSpan(i)
		if err := m.CheckBlock(i, data[s:e]); err != nil {
			t.Fatalf("%s: %v", m.ID, err)
		}
	}
}

// tempFiles lists the temporary files under dir.
func tempFiles(dir string) []string {
	var left []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), tempPrefix) && d.Name() != lockName {
			left = append(left, p)
		}
		return nil
	})
	return left
}

func equalBytes(a, b []byte) bool { return bytes.Equal(a, b) }
