package protocol

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// publisher is a test content CA's publisher: a key and its chain.
type publisher struct {
	ca     *testCA
	signer crypto.Signer
	chain  [][]byte
}

func newPublisher(t testing.TB, ca *testCA, keyKind string) publisher {
	t.Helper()
	key := testKey(t, keyKind)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(77), Subject: pkix.Name{CommonName: "publisher " + keyKind},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return publisher{ca: ca, signer: key, chain: [][]byte{der}}
}

// contentPolicy is a client's publisher policy: the chain leads to ca and
// the leaf names codeSigning.
func contentPolicy(ca *testCA) func([][]byte) (*x509.Certificate, error) {
	return func(chain [][]byte) (*x509.Certificate, error) {
		leaf, err := x509.ParseCertificate(chain[0])
		if err != nil {
			return nil, err
		}
		roots := x509.NewCertPool()
		roots.AddCert(ca.cert)
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}); err != nil {
			return nil, err
		}
		return leaf, nil
	}
}

// medium is n bytes of a fixed pattern.
func medium(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}

func mustBuild(t testing.TB, data []byte, id string, blockSize int) *Manifest {
	t.Helper()
	m, err := BuildManifest(bytes.NewReader(data), MediaInfo{ID: id, Size: int64(len(data)), ContentType: "audio/flac", Duration: 12.5}, blockSize)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Every size at the block boundaries, at three block sizes: the blocks
// tile the medium, each checks, and Blocks covers any range with the
// fewest whole blocks; the manifest survives signing and opening.
func TestManifestBoundaries(t *testing.T) {
	ca := newTestCA(t, "content")
	pub := newPublisher(t, ca, "ed25519")
	for _, bs := range []int{4 << 10, 64 << 10, 1 << 20} {
		for _, size := range []int{0, 1, bs - 1, bs, bs + 1, 3*bs + 17, 4 * bs} {
			t.Run(fmt.Sprintf("bs%d/size%d", bs, size), func(t *testing.T) {
				data := medium(size)
				m := mustBuild(t, data, "albums/a.flac", bs)
				want := max(1, (size+bs-1)/bs)
				if len(m.hashes) != want || m.Size != int64(size) || m.BlockSize != bs {
					t.Fatalf("%d hashes, size %d, block size %d; want %d hashes", len(m.hashes), m.Size, m.BlockSize, want)
				}
				var next int64
				for i := int64(0); i < int64(want); i++ {
					start, end, ok := m.BlockSpan(i)
					if !ok || start != next || end-start > int64(bs) || end > m.Size || (end-start == 0) != (size == 0) {
						t.Fatalf("block %d spans [%d, %d) %v", i, start, end, ok)
					}
					next = end
					if err := m.CheckBlock(i, data[start:end]); err != nil {
						t.Fatalf("block %d: %v", i, err)
					}
				}
				if next != m.Size {
					t.Fatalf("blocks end at %d of %d", next, m.Size)
				}
				if _, _, ok := m.BlockSpan(int64(want)); ok {
					t.Fatal("a block past the end")
				}
				for _, r := range [][2]int64{{0, m.Size}, {0, 1}, {m.Size - 1, m.Size}, {int64(bs) - 1, int64(bs) + 1},
					{int64(bs), int64(2 * bs)}, {-5, m.Size + 5}, {0, 0}, {m.Size, m.Size}, {int64(bs), int64(bs)}} {
					first, last := m.Blocks(r[0], r[1])
					from := min(max(r[0], 0), m.Size)
					to := min(max(r[1], from), m.Size)
					s, _, ok1 := m.BlockSpan(first)
					_, e, ok2 := m.BlockSpan(last)
					if !ok1 || !ok2 || first > last || s > from || e < to {
						t.Fatalf("Blocks(%d, %d) = %d, %d: [%d, %d) does not cover [%d, %d)", r[0], r[1], first, last, s, e, from, to)
					}
					// The fewest blocks: the first and the last each hold a
					// byte of the range (or, for an empty range, its position).
					if to > from && (from >= s+int64(bs) || to <= e-int64(bs)) {
						t.Fatalf("Blocks(%d, %d) = %d, %d: more blocks than needed", r[0], r[1], first, last)
					}
					if to == from && first != last {
						t.Fatalf("Blocks(%d, %d) = %d, %d for an empty range", r[0], r[1], first, last)
					}
				}
				signed, err := SignManifest(m, pub.signer, pub.chain)
				if err != nil {
					t.Fatal(err)
				}
				got, err := OpenManifest(signed, contentPolicy(ca))
				if err != nil {
					t.Fatal(err)
				}
				if got.Publisher == nil || !bytes.Equal(got.Publisher.Raw, pub.chain[0]) {
					t.Fatal("OpenManifest did not set the publisher")
				}
				got.Publisher = nil
				if !bytes.Equal(got.marshal(), m.marshal()) || got.ID != m.ID || got.Duration != 12.5 || got.ContentType != "audio/flac" {
					t.Fatalf("round trip changed the manifest: %s", got.marshal())
				}
			})
		}
	}
}

// A block that differs in one byte, in length, or is out of range is a
// BlockMismatch naming the block's first byte.
func TestCheckBlockMismatch(t *testing.T) {
	data := medium(10000)
	m := mustBuild(t, data, "a/b", 4096)
	bad := bytes.Clone(data[4096:8192])
	bad[100] ^= 1
	for _, c := range []struct {
		i      int64
		data   []byte
		offset int64
	}{
		{1, bad, 4096},
		{1, data[4096:8191], 4096},
		{2, data[8192:], 8192}, // right
		{2, append(bytes.Clone(data[8192:]), 0), 8192},
		{0, data[4096:8192], 0},
		{3, nil, 10000},
		{-1, nil, 0},
	} {
		err := m.CheckBlock(c.i, c.data)
		if c.i == 2 && len(c.data) == 10000-8192 {
			if err != nil {
				t.Fatalf("the right last block: %v", err)
			}
			continue
		}
		var mm *BlockMismatch
		if !errors.As(err, &mm) || !errors.Is(err, ErrManifestMismatch) || mm.Media != "a/b" || mm.Offset != c.offset {
			t.Fatalf("block %d: %v, want a mismatch at %d", c.i, err, c.offset)
		}
	}
}

func TestBuildManifestRefuses(t *testing.T) {
	data := medium(5000)
	good := MediaInfo{ID: "a/b", Size: 5000, ContentType: "audio/flac"}
	for _, c := range []struct {
		what string
		info func(MediaInfo) MediaInfo
		bs   int
		r    func() *bytes.Reader
	}{
		{"shorter than its size", func(i MediaInfo) MediaInfo { i.Size = 5001; return i }, 4096, nil},
		{"longer than its size", func(i MediaInfo) MediaInfo { i.Size = 4999; return i }, 4096, nil},
		{"an invalid id", func(i MediaInfo) MediaInfo { i.ID = "a/../b"; return i }, 4096, nil},
		{"a block size not a power of two", nil, 5000, nil},
		{"a block size too small", nil, 2048, nil},
		{"a block size too large", nil, 32 << 20, nil},
		{"a negative duration", func(i MediaInfo) MediaInfo { i.Duration = -1; return i }, 4096, nil},
		{"a control character in the content type", func(i MediaInfo) MediaInfo { i.ContentType = "audio/\nflac"; return i }, 4096, nil},
	} {
		info := good
		if c.info != nil {
			info = c.info(info)
		}
		if _, err := BuildManifest(bytes.NewReader(data), info, c.bs); err == nil {
			t.Errorf("%s: built", c.what)
		}
	}
	// A reader that fails fails the build.
	if _, err := BuildManifest(iotest.ErrReader(errors.New("disk")), good, 4096); err == nil {
		t.Error("a failing reader built a manifest")
	}
	// Size -1: whatever r holds; blockSize 0: the default.
	m, err := BuildManifest(iotest.HalfReader(bytes.NewReader(data)), MediaInfo{ID: "a", Size: -1}, 0)
	if err != nil || m.Size != 5000 || m.BlockSize != defaultManifestBlockSize {
		t.Fatalf("%+v %v", m, err)
	}
	// blockSize 0 grows the default for a large medium.
	big := MediaInfo{ID: "a", Size: maxManifestBlocks*defaultManifestBlockSize + 1}
	bs := defaultManifestBlockSize
	for manifestBlockCount(big.Size, bs) > maxManifestBlocks {
		bs *= 2
	}
	if bs == defaultManifestBlockSize {
		t.Fatal("test medium too small")
	}
	if _, err := BuildManifest(bytes.NewReader(nil), big, 0); err == nil || !strings.Contains(err.Error(), fmt.Sprint(big.Size)) {
		t.Fatalf("an empty reader for a large medium: %v", err)
	}
}

// What OpenManifest must refuse: another publisher, a policy that refuses
// the chain, any change of the manifest or of the signature, a swapped
// media id.
func TestOpenManifestRefuses(t *testing.T) {
	ca, other := newTestCA(t, "content"), newTestCA(t, "other content")
	pub, stranger := newPublisher(t, ca, "p256"), newPublisher(t, other, "ed25519")
	m := mustBuild(t, medium(10000), "a/b.flac", 4096)
	signed, err := SignManifest(m, pub.signer, pub.chain)
	if err != nil {
		t.Fatal(err)
	}
	var file signedManifestMsg
	if err := json.Unmarshal(signed, &file); err != nil {
		t.Fatal(err)
	}
	if file.Scheme != schemeECDSAP256 {
		t.Fatalf("scheme %s", file.Scheme)
	}
	reencode := func(f signedManifestMsg) []byte {
		b, err := json.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// resigned: the manifest bytes changed and signed again by pub: only
	// the manifest's own rules can refuse it.
	resigned := func(manifest []byte) []byte {
		f := file
		f.Manifest = manifest
		sc, _ := serverScheme(pub.signer.Public())
		if f.Signature, err = sc.sign(pub.signer, manifestSignedContent(manifest)); err != nil {
			t.Fatal(err)
		}
		return reencode(f)
	}
	strangers, err := SignManifest(m, stranger.signer, stranger.chain)
	if err != nil {
		t.Fatal(err)
	}
	swapped := bytes.Replace(file.Manifest, []byte(`"a/b.flac"`), []byte(`"a/c.flac"`), 1)
	hash := bytes.Clone(file.Manifest)
	i := bytes.Index(hash, []byte(`"hashes":["`)) + len(`"hashes":["`)
	hash[i] ^= 1
	refusingPolicy := func([][]byte) (*x509.Certificate, error) { return nil, errors.New("revoked") }
	for _, c := range []struct {
		what   string
		signed []byte
		policy func([][]byte) (*x509.Certificate, error)
	}{
		{"another publisher's manifest", strangers, contentPolicy(ca)},
		{"a chain the policy refuses", signed, refusingPolicy},
		{"no policy", signed, nil},
		{"a policy that returns another key", signed, func([][]byte) (*x509.Certificate, error) {
			return x509.ParseCertificate(stranger.chain[0])
		}},
		{"a tampered manifest", func() []byte { f := file; f.Manifest = hash; return reencode(f) }(), contentPolicy(ca)},
		{"a swapped media id", func() []byte { f := file; f.Manifest = swapped; return reencode(f) }(), contentPolicy(ca)},
		{"a tampered signature", func() []byte {
			f := file
			f.Signature = bytes.Clone(f.Signature)
			f.Signature[len(f.Signature)-1] ^= 1
			return reencode(f)
		}(), contentPolicy(ca)},
		{"another scheme named", func() []byte { f := file; f.Scheme = schemeECDSAP384; return reencode(f) }(), contentPolicy(ca)},
		{"PKCS #1 v1.5", func() []byte { f := file; f.Scheme = schemeRSAPKCS1; return reencode(f) }(), contentPolicy(ca)},
		{"an unknown scheme", func() []byte { f := file; f.Scheme = "md5"; return reencode(f) }(), contentPolicy(ca)},
		{"no chain", func() []byte { f := file; f.Chain = nil; return reencode(f) }(), contentPolicy(ca)},
		{"a trailing newline", append(bytes.Clone(signed), '\n'), contentPolicy(ca)},
		{"an unknown member", bytes.Replace(signed, []byte(`{`), []byte(`{"x":1,`), 1), contentPolicy(ca)},
		{"members in another order", bytes.Replace(reencode(file), []byte(`{"manifest"`), []byte(`{"scheme":"`+file.Scheme+`","manifest"`), 1), contentPolicy(ca)},
		{"not JSON", []byte("manifest"), contentPolicy(ca)},
		{"too large", make([]byte, maxSignedManifestSize+1), contentPolicy(ca)},
		// Signed again by the right publisher, but not a valid manifest.
		{"trailing data", resigned(append(bytes.Clone(file.Manifest), ' ')), contentPolicy(ca)},
		{"a duplicate member", resigned(bytes.Replace(file.Manifest, []byte(`"size"`), []byte(`"size":1,"size"`), 1)), contentPolicy(ca)},
		{"an unknown manifest member", resigned(bytes.Replace(file.Manifest, []byte(`"size"`), []byte(`"sizes":1,"size"`), 1)), contentPolicy(ca)},
		{"version 2", resigned(bytes.Replace(file.Manifest, []byte(`"v":1`), []byte(`"v":2`), 1)), contentPolicy(ca)},
		{"a hash missing", resigned(bytes.Replace(file.Manifest, []byte(`"hashes":["`), []byte(`"hashes":["x`), 1)), contentPolicy(ca)},
		{"size off by one", resigned(bytes.Replace(file.Manifest, []byte(`"size":10000`), []byte(`"size":12289`), 1)), contentPolicy(ca)},
		{"an invalid id", resigned(bytes.Replace(file.Manifest, []byte(`"a/b.flac"`), []byte(`"a//b.flac"`), 1)), contentPolicy(ca)},
		{"a block size not a power of two", resigned(bytes.Replace(file.Manifest, []byte(`"block_size":4096`), []byte(`"block_size":4095`), 1)), contentPolicy(ca)},
		{"a duration as an exponent", resigned(bytes.Replace(file.Manifest, []byte(`"duration":12.5`), []byte(`"duration":1.25e1`), 1)), contentPolicy(ca)},
		{"spaces", resigned(bytes.Replace(file.Manifest, []byte(`,"size"`), []byte(`, "size"`), 1)), contentPolicy(ca)},
	} {
		_, err := OpenManifest(c.signed, c.policy)
		if !errors.Is(err, ErrManifest) {
			t.Errorf("%s: %v", c.what, err)
		}
	}
	// The same file, signed again unchanged, opens.
	if _, err := OpenManifest(resigned(file.Manifest), contentPolicy(ca)); err != nil {
		t.Fatal(err)
	}
	// SignManifest refuses a chain whose leaf is not the signer's.
	if _, err := SignManifest(m, stranger.signer, pub.chain); err == nil {
		t.Fatal("signed with a key its chain does not carry")
	}
}

// Every key type a publisher may have signs a manifest that opens; the
// scheme is the one its key implies.
func TestManifestSchemes(t *testing.T) {
	ca := newTestCA(t, "content")
	m := mustBuild(t, medium(100), "a", 4096)
	for kind, want := range map[string]string{"ed25519": schemeEd25519, "p256": schemeECDSAP256, "p384": schemeECDSAP384, "rsa": schemeRSAPSS} {
		pub := newPublisher(t, ca, kind)
		signed, err := SignManifest(m, pub.signer, pub.chain)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(signed, []byte(`"scheme":"`+want+`"`)) {
			t.Errorf("%s signs as %s", kind, signed[:100])
		}
		if _, err := OpenManifest(signed, contentPolicy(ca)); err != nil {
			t.Errorf("%s: %v", kind, err)
		}
	}
}

// The encoding is the one §22 spells out, escapes and all.
func TestManifestEncoding(t *testing.T) {
	m, err := BuildManifest(bytes.NewReader(nil), MediaInfo{ID: `ü/"q"\x`, Size: 0, ContentType: `audio/ogg; codecs="opus"`, Duration: 0.1}, 4096)
	if err == nil {
		t.Fatal(`a media id with a backslash`)
	}
	m, err = BuildManifest(bytes.NewReader(nil), MediaInfo{ID: `ü/"q"`, Size: 0, ContentType: `audio/ogg; codecs="opus"`, Duration: 0.1}, 4096)
	if err != nil {
		t.Fatal(err)
	}
	empty := sha256.Sum256(nil)
	want := `{"v":1,"id":"ü/\"q\"","size":0,"content_type":"audio/ogg; codecs=\"opus\"","duration":0.1,"block_size":4096,"hashes":["` +
		base64.StdEncoding.EncodeToString(empty[:]) + `"]}`
	if got := string(m.marshal()); got != want {
		t.Fatalf("encoding\n%s\nwant\n%s", got, want)
	}
	if back, err := parseManifest([]byte(want)); err != nil || string(back.marshal()) != want {
		t.Fatalf("%v", err)
	}
	m.Duration = 0
	if got := string(m.marshal()); strings.Contains(got, "duration") {
		t.Fatalf("duration 0 not omitted: %s", got)
	}
}

// The manifest request: credentials needed, never refused by the limits,
// answered once, its reply bound to the medium and counted.
func TestManifestRequest(t *testing.T) {
	p := newPair(t, DefaultSuites()[0], DefaultLimits())
	req := p.client.NewManifestRequest("a/b.flac")
	if req.Type() != MsgManifest || MsgManifest.String() != "manifest" {
		t.Fatalf("type %v", req.Type())
	}
	a, err := p.server.OpenRequest(req.Envelope())
	if err != nil {
		t.Fatal(err)
	}
	if a.MediaID() != "a/b.flac" || a.Chunk() != (ChunkRequest{}) || a.Type() != MsgManifest {
		t.Fatalf("manifest request opened as %q / %+v", a.MediaID(), a.Chunk())
	}
	for _, wrong := range []func() error{
		func() error { _, err := p.server.SealReply(a, nil); return err },
		func() error { _, err := p.server.SealRenewal(a, Renewal{Media: "a/b.flac"}); return err },
	} {
		if err := wrong(); !errors.Is(err, ErrWrongMessage) {
			t.Fatalf("a manifest request answered as another: %v", err)
		}
	}
	if _, err := p.server.SealManifest(a, nil); !errors.Is(err, ErrNoManifest) {
		t.Fatalf("an empty manifest: %v", err)
	}
	signed := []byte(`{"manifest":"…"}`)
	before := p.server.bytes
	reply, err := p.server.SealManifest(a, signed)
	if err != nil {
		t.Fatal(err)
	}
	if p.server.bytes != before+uint64(len(signed)) {
		t.Fatalf("the reply counted %d bytes, want %d", p.server.bytes-before, len(signed))
	}
	if _, err := p.server.SealManifest(a, signed); !errors.Is(err, errAnswered) {
		t.Fatalf("answered one manifest request twice: %v", err)
	}
	other := *req
	other.chunk.MediaID = "other.flac"
	if _, err := other.OpenManifest(bytes.Clone(reply)); !errors.Is(err, ErrAuthentication) {
		t.Fatalf("a manifest opened for another medium: %v", err)
	}
	if _, err := p.client.NewRenewRequest("a/b.flac").OpenManifest(reply); !errors.Is(err, ErrUnexpectedReply) {
		t.Fatalf("a renew request opened a manifest: %v", err)
	}
	got, err := req.OpenManifest(reply)
	if err != nil || !bytes.Equal(got, signed) {
		t.Fatalf("%q, %v", got, err)
	}
	// A chunk request's media id; a catalog request has none.
	if a, err := p.server.OpenRequest(p.client.NewCatalogRequest().Envelope()); err != nil || a.MediaID() != "" {
		t.Fatalf("catalog: %v", err)
	}
	// Invalid ids are refused before anything counts.
	if _, err := p.server.OpenRequest(p.client.NewManifestRequest("a/../b").Envelope()); !errors.Is(err, errMediaID) {
		t.Fatalf("an invalid media id: %v", err)
	}
}

// An exhausted epoch still answers manifest requests (like renewals).
func TestManifestRequestIgnoresLimits(t *testing.T) {
	p := newPair(t, DefaultSuites()[0], EpochLimits{Chunks: 1, Bytes: MinChunkSize, AgeSeconds: 3600})
	if _, err := p.server.OpenRequest(p.client.NewChunkRequest("a", 0).Envelope()); err != nil {
		t.Fatal(err)
	}
	if _, err := p.server.OpenRequest(p.client.NewChunkRequest("a", 1).Envelope()); !errors.Is(err, ErrRekeyRequired) {
		t.Fatalf("limits: %v", err)
	}
	if _, err := p.server.OpenRequest(p.client.NewManifestRequest("a").Envelope()); err != nil {
		t.Fatalf("a manifest request of an exhausted epoch: %v", err)
	}
}

// A manifest request of a session that owes its credentials is refused
// like a chunk request.
func TestManifestNeedsCredentials(t *testing.T) {
	devices, users := newTestCA(t, "devices"), newTestCA(t, "users")
	p := newAuthPair(t, DefaultSuites()[0], authPolicy(devices, users, true, CredentialDevice))
	if _, err := p.server.OpenRequest(p.client.NewManifestRequest("a").Envelope()); !errors.Is(err, ErrCredentialsRequired) {
		t.Fatalf("manifest before the credentials: %v", err)
	}
	if err := p.authenticate(t, devices.issue(t, CredentialDevice, "ed25519")); err != nil {
		t.Fatal(err)
	}
	if _, err := p.server.OpenRequest(p.client.NewManifestRequest("a").Envelope()); err != nil {
		t.Fatalf("manifest after the credentials: %v", err)
	}
}

func TestNoManifestRefusal(t *testing.T) {
	status, code, _ := Refusal(fmt.Errorf("%w: a/b.flac", ErrNoManifest))
	if status != 404 || code != "no-manifest" || !errors.Is(ErrorFromCode(code+": x"), ErrNoManifest) {
		t.Fatalf("%d %q", status, code)
	}
	if ErrorCode(ErrManifest) != "" || ErrorCode(&BlockMismatch{}) != "" {
		t.Fatal("client-side manifest errors have wire codes")
	}
}
