package protocol

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"
)

// manifestVector is a publisher-signed manifest (§22) of a fixed medium,
// signed by an Ed25519 key from a fixed seed (deterministic, so every
// byte is fixed) under a fixed self-signed codeSigning certificate.
type manifestVector struct {
	Medium         hexBytes   `json:"medium"`
	MediaID        string     `json:"media_id"`
	Size           int64      `json:"size"`
	ContentType    string     `json:"content_type"`
	Duration       float64    `json:"duration"` // 0: omitted from the manifest
	BlockSize      int        `json:"block_size"`
	Hashes         []hexBytes `json:"hashes"`
	Manifest       hexBytes   `json:"manifest"`
	PublisherSeed  hexBytes   `json:"publisher_ed25519_seed"`
	PublisherCert  hexBytes   `json:"publisher_certificate"`
	SignedContent  hexBytes   `json:"signed_content"`
	Signature      hexBytes   `json:"signature"`
	SignedManifest hexBytes   `json:"signed_manifest"`
}

// fixedPublisherCert is a publisher's certificate that every run makes
// alike: fixed fields, codeSigning, self-signed by a deterministic key.
func fixedPublisherCert(tb testing.TB, cn string, key crypto.Signer) []byte {
	tb.Helper()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(43), Subject: pkix.Name{CommonName: cn},
		NotBefore: at, NotAfter: at.AddDate(10, 0, 0), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}
	der, err := x509.CreateCertificate(zeroReader{}, tmpl, tmpl, key.Public(), key)
	if err != nil {
		tb.Fatal(err)
	}
	return der
}

func manifestVectors(t *testing.T) []manifestVector {
	t.Helper()
	key := ed25519.NewKeyFromSeed(seqBytes(0x61, ed25519.SeedSize))
	cert := fixedPublisherCert(t, "vector publisher", key)
	pinnedCert := func(chain [][]byte) (*x509.Certificate, error) {
		if !bytes.Equal(chain[0], cert) {
			t.Fatal("another publisher")
		}
		return x509.ParseCertificate(chain[0])
	}
	var out []manifestVector
	for _, in := range []struct {
		data []byte
		info MediaInfo
	}{
		// Three blocks, the last short; a duration that needs 17 digits.
		{mod251(10000), MediaInfo{ID: "albums/track01.flac", ContentType: "audio/flac", Duration: 10000 / 44.1}},
		// An empty medium: one empty block; escapes; no duration.
		{nil, MediaInfo{ID: "ünï/\"quoted\".opus", ContentType: `audio/ogg; codecs="opus"`}},
	} {
		in.info.Size = int64(len(in.data))
		m, err := BuildManifest(bytes.NewReader(in.data), in.info, 4096)
		if err != nil {
			t.Fatal(err)
		}
		signed, err := SignManifest(m, key, [][]byte{cert})
		if err != nil {
			t.Fatal(err)
		}
		opened, err := OpenManifest(signed, pinnedCert)
		if err != nil {
			t.Fatal(err)
		}
		msg, _, err := parseSignedManifest(signed)
		if err != nil {
			t.Fatal(err)
		}
		v := manifestVector{
			Medium: bytes.Clone(in.data), MediaID: opened.ID, Size: opened.Size, ContentType: opened.ContentType,
			Duration: opened.Duration, BlockSize: opened.BlockSize, Manifest: msg.Manifest,
			PublisherSeed: key.Seed(), PublisherCert: cert, SignedContent: manifestSignedContent(msg.Manifest),
			Signature: msg.Signature, SignedManifest: signed,
		}
		if v.Medium == nil {
			v.Medium = []byte{}
		}
		for i := range opened.hashes {
			start, end, _ := opened.BlockSpan(int64(i))
			if err := opened.CheckBlock(int64(i), in.data[start:end]); err != nil {
				t.Fatal(err)
			}
			h := sha256.Sum256(in.data[start:end])
			v.Hashes = append(v.Hashes, h[:])
		}
		out = append(out, v)
	}
	return out
}

// mod251 is n bytes i mod 251: no two blocks alike.
func mod251(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}
