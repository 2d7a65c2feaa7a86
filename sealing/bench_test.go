package sealing

import (
	"context"
	"io"
	"testing"

	"filippo.io/age"
)

// benchSize is the medium both benchmarks encrypt: one file, one core.
const benchSize = 32 << 20

// BenchmarkSeal: SealTree of one medium, on one core (Jobs 1, Force):
// read, hash for the manifest, encrypt, sync, rename, sign. Compare its
// MB/s with BenchmarkAgeEncrypt's, age's own Encrypt of the same bytes
// from memory to nowhere, in the same run.
func BenchmarkSeal(b *testing.B) {
	pub := newPublisher(b)
	x, _ := age.GenerateX25519Identity()
	src := writeTree(b, map[string][]byte{"bench.flac": mediaBytes(benchSize, 1)})
	dst := b.TempDir()
	opts := options(pub, x.Recipient())
	opts.Jobs, opts.Force = 1, true
	b.SetBytes(benchSize)
	for b.Loop() {
		if _, err := SealTree(context.Background(), src, dst, opts); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAgeEncrypt: age.Encrypt of the bytes BenchmarkSeal seals.
func BenchmarkAgeEncrypt(b *testing.B) {
	x, _ := age.GenerateX25519Identity()
	data := mediaBytes(benchSize, 1)
	b.SetBytes(benchSize)
	for b.Loop() {
		w, err := age.Encrypt(io.Discard, x.Recipient())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := w.Write(data); err != nil {
			b.Fatal(err)
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
