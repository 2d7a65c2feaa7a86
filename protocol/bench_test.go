package protocol

import (
	"testing"
)

// BenchmarkSealChunk and BenchmarkOpenChunk measure one chunk of the
// default size per suite family (the group does not matter on this path).
// Compare the suites with each other in one run: AES-GCM is the baseline.
func benchSuites() []string {
	return []string{
		"X25519_AES128_GCM_SHA256",
		"X25519_AES256_GCM_SHA384",
		"X25519_CHACHA20_POLY1305_SHA256",
		"X25519_AES128_CBC_SHA256",
		"X25519_AES256_CBC_SHA384",
		"X25519_AES128_CTR_SHA256",
	}
}

func benchPair(b *testing.B, name string) (pair, []byte) {
	suite, err := parseSuite(name)
	if err != nil {
		b.Fatal(err)
	}
	p := newPairSized(b, suite, EpochLimits{}, DefaultChunkSize)
	return p, make([]byte, DefaultChunkSize)
}

func BenchmarkSealChunk(b *testing.B) {
	for _, name := range benchSuites() {
		b.Run(name, func(b *testing.B) {
			p, data := benchPair(b, name)
			dst := make([]byte, 0, len(data)+ReplyHeaderSize+128)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				req := p.client.NewChunkRequest("media/track.flac", 0)
				a, err := p.server.OpenRequest(req.Envelope())
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if _, err := p.server.SealChunk(dst[:0], a, uint64(len(data)), data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkOpenChunk(b *testing.B) {
	for _, name := range benchSuites() {
		b.Run(name, func(b *testing.B) {
			p, data := benchPair(b, name)
			req := p.client.NewChunkRequest("media/track.flac", 0)
			a, err := p.server.OpenRequest(req.Envelope())
			if err != nil {
				b.Fatal(err)
			}
			sealed, err := p.server.SealChunk(nil, a, uint64(len(data)), data)
			if err != nil {
				b.Fatal(err)
			}
			// OpenChunk decrypts in place: each round opens a fresh copy.
			work := make([]byte, len(sealed))
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				copy(work, sealed)
				b.StartTimer()
				if _, err := req.OpenChunk(work); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkHandshake is the server's work for one full handshake
// (negotiate, key share, sign, derive) per key-exchange group, with an
// Ed25519 identity; the client's work is outside the timer.
func BenchmarkHandshake(b *testing.B) {
	for _, name := range []string{"X25519_AES128_GCM_SHA256", "X25519MLKEM768_AES128_GCM_SHA256", "P256_AES128_GCM_SHA256", "FFDHE2048_AES128_GCM_SHA256"} {
		b.Run(name, func(b *testing.B) {
			suite, _ := parseSuite(name)
			id := testIdentity(b, "ed25519")
			scfg := testServer(b, ServerConfig{Suites: []Suite{suite}, Identity: id, ChunkSize: DefaultChunkSize, Limits: DefaultLimits()})
			ccfg := &ClientConfig{Suites: []Suite{suite}, VerifyCertificate: pinned(id)}
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				_, hello, err := ccfg.Start()
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if _, _, err := scfg.Accept(hello); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
