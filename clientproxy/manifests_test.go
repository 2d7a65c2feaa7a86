package clientproxy

import (
	"bytes"
	"crypto/x509"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/caddy-drm/caddy-drm/keystore"
	"github.com/caddy-drm/caddy-drm/protocol"
)

// publisher is a content CA with a publisher, made by the PKI tooling.
type publisher struct {
	verify func([][]byte) (*x509.Certificate, error)
	id     *keystore.Identity
}

func newPublisher(t *testing.T) *publisher {
	t.Helper()
	dir := t.TempDir()
	files, err := keystore.InitPKI(dir, keystore.PKIOptions{})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := keystore.IssuePublisher(dir, "label", keystore.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	id, err := keystore.LoadIdentity(leaf.Cert, leaf.Key)
	if err != nil {
		t.Fatal(err)
	}
	roots, err := keystore.LoadContentCAs(files.CA(keystore.ContentCA).Cert)
	if err != nil {
		t.Fatal(err)
	}
	return &publisher{verify: keystore.ContentVerifier(roots), id: id}
}

// sign makes the signed manifest of data as media id.
func (p *publisher) sign(t *testing.T, id string, data []byte, blockSize int) []byte {
	t.Helper()
	m, err := protocol.BuildManifest(bytes.NewReader(data), protocol.MediaInfo{ID: id, Size: int64(len(data)), ContentType: "audio/mpeg"}, blockSize)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := protocol.SignManifest(m, p.id.Signer, p.id.Chain)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

func (s *drmServer) setManifest(id string, signed []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.manifests == nil {
		s.manifests = map[string][]byte{}
	}
	s.manifests[id] = signed
}

// corrupt changes one byte of medium id at the origin, after its manifest
// was signed.
func (s *drmServer) corrupt(id string, off int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.media[id][off] ^= 0x40
}

// Every byte checked at any alignment of chunks and blocks: blocks larger
// than chunks (4 KiB blocks, 1 KiB chunks), smaller (4 KiB blocks, 16 KiB
// chunks) and neither dividing the other; sizes at the edges; seeks.
func TestManifestVerifiedReads(t *testing.T) {
	pub := newPublisher(t)
	for _, c := range []struct {
		name      string
		chunkSize int
		blockSize int
		size      int
	}{
		{"blocks span chunks", drmChunkSize, 4096, 10*4096 + 17},
		{"chunks span blocks", 16 << 10, 4096, 3*(16<<10) + 5},
		{"empty medium", drmChunkSize, 4096, 0},
		{"one byte", drmChunkSize, 4096, 1},
		{"unaligned", 3 * drmChunkSize, 8192, 50000},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := newDRMServer(t, drmOptions{ChunkSize: c.chunkSize})
			data := srv.add("a.mp3", c.size)
			srv.setManifest("a.mp3", pub.sign(t, "a.mp3", data, c.blockSize))
			cl := newDRMClient(t, srv, func(o *ClientOptions) { o.VerifyManifest = pub.verify })
			if _, err := cl.Catalog(testCtx(t)); err != nil {
				t.Fatal(err)
			}
			n := int64(protocol.ChunkCount(uint64(c.size), c.chunkSize))
			order := rand.New(rand.NewPCG(1, uint64(c.size))).Perm(int(n))
			for _, i := range order { // seeks
				got, err := cl.ReadChunk(testCtx(t), "a.mp3", int64(i))
				start, end, _ := protocol.ChunkSpan(uint64(i), uint64(c.size), c.chunkSize)
				if err != nil || !bytes.Equal(got, data[start:end]) {
					t.Fatalf("chunk %d: %v", i, err)
				}
			}
		})
	}
}

// A byte changed at the origin: the chunks of its block are refused,
// naming the medium and the block's offset; the other blocks play. A
// manifest missing, of another medium, or of another publisher: nothing
// plays.
func TestManifestRefusals(t *testing.T) {
	pub, other := newPublisher(t), newPublisher(t)
	const bs = 4096
	setup := func(t *testing.T) (*drmServer, *Client, []byte) {
		srv := newDRMServer(t, drmOptions{})
		data := srv.add("a.mp3", 8*bs)
		srv.add("b.mp3", 8*bs)
		srv.setManifest("a.mp3", pub.sign(t, "a.mp3", data, bs))
		cl := newDRMClient(t, srv, func(o *ClientOptions) { o.VerifyManifest = pub.verify })
		if _, err := cl.Catalog(testCtx(t)); err != nil {
			t.Fatal(err)
		}
		return srv, cl, data
	}
	t.Run("a byte changed at the origin", func(t *testing.T) {
		srv, cl, data := setup(t)
		srv.corrupt("a.mp3", 5*bs+100)
		for i := int64(0); i < 8*bs/drmChunkSize; i++ {
			got, err := cl.ReadChunk(testCtx(t), "a.mp3", i)
			inBad := i*drmChunkSize >= 5*bs && i*drmChunkSize < 6*bs
			var mm *protocol.BlockMismatch
			switch {
			case inBad && (!errors.As(err, &mm) || mm.Media != "a.mp3" || mm.Offset != 5*bs || got != nil):
				t.Fatalf("chunk %d of the changed block: %v (%d bytes)", i, err, len(got))
			case !inBad && (err != nil || !bytes.Equal(got, data[i*drmChunkSize:(i+1)*drmChunkSize])):
				t.Fatalf("chunk %d of an intact block: %v", i, err)
			}
		}
	})
	for _, c := range []struct {
		name string
		set  func(*drmServer, []byte)
		want error
	}{
		{"no manifest", func(srv *drmServer, _ []byte) { srv.setManifest("b.mp3", nil); delete(srv.manifests, "b.mp3") }, protocol.ErrNoManifest},
		{"the manifest of another medium", func(srv *drmServer, data []byte) { srv.setManifest("b.mp3", pub.sign(t, "a.mp3", data, bs)) }, protocol.ErrManifest},
		{"another publisher", func(srv *drmServer, _ []byte) {
			srv.setManifest("b.mp3", other.sign(t, "b.mp3", srv.media["b.mp3"], bs))
		}, protocol.ErrManifest},
		{"a changed manifest", func(srv *drmServer, _ []byte) {
			m := pub.sign(t, "b.mp3", srv.media["b.mp3"], bs)
			i := bytes.Index(m, []byte(`"manifest":"`)) + 30
			m[i] ^= 1
			srv.setManifest("b.mp3", m)
		}, protocol.ErrManifest},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv, cl, data := setup(t)
			c.set(srv, data)
			got, err := cl.ReadChunk(testCtx(t), "b.mp3", 0)
			if !errors.Is(err, c.want) || got != nil || !strings.Contains(err.Error(), "b.mp3") {
				t.Fatalf("got %d bytes, %v; want %v", len(got), err, c.want)
			}
			if st := srv.snapshot(); st.requests["chunk"] != 0 {
				t.Fatalf("%d chunks fetched of a medium without a valid manifest", st.requests["chunk"])
			}
		})
	}
}
