package protocol

// Known-answer vectors of the wire protocol (docs/PROTOCOL.md).
//
// TestVectors computes every vector from fixed inputs through the code of
// this package and compares the result, byte for byte, with the committed
// testdata/vectors.json. After a deliberate change of the wire format or
// the key schedule (which needs a new Version), regenerate the file with
//
//	go test ./protocol -run TestVectors -update
//
// and review the diff. Independently of the file, the test recomputes what
// it can without the package's code — HKDF from HMAC, the transcript hash,
// the nonce, every record by a separate implementation of its cipher
// (CBC and CTR built from the raw AES block function), the header layouts
// by hand — and checks the ECDH groups against RFC 7748 and RFC 5903.

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/mlkem"
	"crypto/mlkem/mlkemtest"
	"crypto/rand"
	"crypto/rsa"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
)

var updateVectors = flag.Bool("update", false, "rewrite testdata/vectors.json from the implementation")

var vectorsPath = filepath.Join("testdata", "vectors.json")

// hexBytes is a byte string that JSON carries as lower-case hex; nil is
// null.
type hexBytes []byte

func (b hexBytes) MarshalJSON() ([]byte, error) {
	if b == nil {
		return []byte("null"), nil
	}
	return json.Marshal(hex.EncodeToString(b))
}

func (b *hexBytes) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		*b = nil
		return nil
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return err
	}
	d, err := hex.DecodeString(s)
	if err != nil {
		return err
	}
	*b = d
	return nil
}

// vectorFile is the layout of testdata/vectors.json. Byte strings are hex;
// integers are JSON numbers (all below 2^53).
type vectorFile struct {
	Comment         string                 `json:"comment"`
	Contexts        contextVectors         `json:"contexts"`
	ExpandLabel     []expandLabelVector    `json:"expand_label"`
	KeySchedule     []keyScheduleVector    `json:"key_schedule"`
	Traffic         []trafficVector        `json:"traffic"`
	Groups          []groupVector          `json:"groups"`
	Transcripts     []transcriptVector     `json:"transcripts"`
	Signatures      []signatureVector      `json:"signatures"`
	RequestHeaders  []requestHeaderVector  `json:"request_headers"`
	ResponseHeaders []responseHeaderVector `json:"response_headers"`
	ReplyAD         []replyADVector        `json:"reply_ad"`
	ChunkRequests   []chunkRequestVector   `json:"chunk_requests"`
	Session         sessionVector          `json:"session"`
}

type contextVectors struct {
	LabelPrefix       hexBytes `json:"label_prefix"`
	Transcript        hexBytes `json:"transcript"`
	RekeyTranscript   hexBytes `json:"rekey_transcript"`
	ServerSignature   hexBytes `json:"server_signature"`
	TrafficLabels     []string `json:"traffic_labels"`
	EpochLabel        string   `json:"epoch_label"`
	ChainLabel        string   `json:"chain_label"`
	EnvelopeHeaderLen int      `json:"envelope_header_len"`
	ReplyHeaderLen    int      `json:"reply_header_len"`
	ReplayWindowSize  int      `json:"replay_window_size"`
}

type expandLabelVector struct {
	Hash    string   `json:"hash"`
	Secret  hexBytes `json:"secret"`
	Label   string   `json:"label"`
	Context hexBytes `json:"context"`
	Length  int      `json:"length"`
	Info    hexBytes `json:"info"`
	Output  hexBytes `json:"output"`
}

type keyScheduleVector struct {
	Hash           string   `json:"hash"`
	Shared         hexBytes `json:"shared"`
	PrevChain      hexBytes `json:"prev_chain"` // null: epoch 0, salt = Hash.Size zero bytes
	TranscriptHash hexBytes `json:"transcript_hash"`
	PRK            hexBytes `json:"prk"`
	EpochSecret    hexBytes `json:"epoch_secret"`
	Chain          hexBytes `json:"chain"`
}

type directionKeys struct {
	Key    hexBytes `json:"key"`
	MACKey hexBytes `json:"mac_key"` // null for the AEAD ciphers
	IV     hexBytes `json:"iv"`
}

type recordVector struct {
	Direction string   `json:"direction"` // "c2s" or "s2c"
	Seq       uint64   `json:"seq"`
	Nonce     hexBytes `json:"nonce"`
	AD        hexBytes `json:"ad"`
	Plaintext hexBytes `json:"plaintext"`
	Sealed    hexBytes `json:"sealed"`
}

type trafficVector struct {
	Suite       string         `json:"suite"`
	EpochSecret hexBytes       `json:"epoch_secret"`
	C2S         directionKeys  `json:"c2s"`
	S2C         directionKeys  `json:"s2c"`
	Records     []recordVector `json:"records"`
}

type groupVector struct {
	Group         string   `json:"group"`
	ClientPrivate hexBytes `json:"client_private,omitempty"`
	ServerPrivate hexBytes `json:"server_private,omitempty"`
	// The hybrid's inputs: ML-KEM-768 decapsulation key seed (d ‖ z) and
	// encapsulation randomness m, and each side's X25519 private key.
	MLKEMSeed           hexBytes `json:"mlkem_seed,omitempty"`
	MLKEMEncapsRandom   hexBytes `json:"mlkem_encaps_random,omitempty"`
	ClientX25519Private hexBytes `json:"client_x25519_private,omitempty"`
	ServerX25519Private hexBytes `json:"server_x25519_private,omitempty"`
	ClientShare         hexBytes `json:"client_share"`
	ServerShare         hexBytes `json:"server_share"`
	Shared              hexBytes `json:"shared"`
}

type transcriptVector struct {
	Name           string     `json:"name"`
	Hash           string     `json:"hash"`
	Context        string     `json:"context"`
	Parts          []hexBytes `json:"parts"`
	TranscriptHash hexBytes   `json:"transcript_hash"`
}

type signatureVector struct {
	KeyType        string   `json:"key_type"`
	PrivateSeed    hexBytes `json:"private_seed"`
	PublicKey      hexBytes `json:"public_key"`
	TranscriptHash hexBytes `json:"transcript_hash"`
	SignedContent  hexBytes `json:"signed_content"`
	Signature      hexBytes `json:"signature"`
}

type requestHeaderVector struct {
	Type      uint8    `json:"type"`
	TypeName  string   `json:"type_name"`
	SessionID hexBytes `json:"session_id"`
	Epoch     uint32   `json:"epoch"`
	Seq       uint64   `json:"seq"`
	Encoding  hexBytes `json:"encoding"`
}

type responseHeaderVector struct {
	Type      uint8    `json:"type"`
	TypeName  string   `json:"type_name"`
	Flags     uint8    `json:"flags"`
	Epoch     uint32   `json:"epoch"`
	Seq       uint64   `json:"seq"`
	Index     uint64   `json:"index"`
	MediaSize uint64   `json:"media_size"`
	Remaining uint32   `json:"remaining"`
	Encoding  hexBytes `json:"encoding"`
}

type replyADVector struct {
	ResponseHeader hexBytes `json:"response_header"`
	SessionID      hexBytes `json:"session_id"`
	MediaID        string   `json:"media_id"`
	AD             hexBytes `json:"ad"`
}

type chunkRequestVector struct {
	MediaID string   `json:"media_id"`
	Index   uint64   `json:"index"`
	Payload hexBytes `json:"payload"`
}

// sessionVector is a whole session with fixed randoms: handshake, one
// catalog and one chunk exchange, a rekey and a request of the new epoch.
type sessionVector struct {
	Suite           string        `json:"suite"`
	ServerSeed      hexBytes      `json:"server_ed25519_seed"`
	ClientPrivate   hexBytes      `json:"client_x25519_private"`
	ServerPrivate   hexBytes      `json:"server_x25519_private"`
	ClientHello     hexBytes      `json:"client_hello"`
	ServerHello     hexBytes      `json:"server_hello"`
	TranscriptHash  hexBytes      `json:"transcript_hash"`
	Signature       hexBytes      `json:"signature"`
	HandshakeReply  hexBytes      `json:"handshake_reply"`
	Shared          hexBytes      `json:"shared"`
	Epoch0          epochVector   `json:"epoch0"`
	Exchanges       []exchangeVec `json:"exchanges"`
	Rekey           rekeyVector   `json:"rekey"`
	Epoch1          epochVector   `json:"epoch1"`
	Epoch1Exchanges []exchangeVec `json:"epoch1_exchanges"`
	Catalog         []MediaInfo   `json:"catalog"`
	Limits          EpochLimits   `json:"limits"`
	ChunkSize       int           `json:"chunk_size"`
}

type epochVector struct {
	EpochSecret hexBytes      `json:"epoch_secret"`
	Chain       hexBytes      `json:"chain"`
	C2S         directionKeys `json:"c2s"`
	S2C         directionKeys `json:"s2c"`
}

type exchangeVec struct {
	Type     string   `json:"type"`
	Seq      uint64   `json:"seq"`
	Payload  hexBytes `json:"payload"`
	Envelope hexBytes `json:"envelope"`
	Reply    hexBytes `json:"reply"`
	Answer   hexBytes `json:"answer"` // the reply's plaintext
}

type rekeyVector struct {
	ClientPrivate  hexBytes `json:"client_x25519_private"`
	ServerPrivate  hexBytes `json:"server_x25519_private"`
	Payload        hexBytes `json:"request_payload"`
	Envelope       hexBytes `json:"envelope"`
	Hello          hexBytes `json:"rekey_hello"`
	TranscriptHash hexBytes `json:"transcript_hash"`
	Signature      hexBytes `json:"signature"`
	Signed         hexBytes `json:"signed"`
	Reply          hexBytes `json:"reply"`
	Shared         hexBytes `json:"shared"`
}

// seqBytes returns n bytes start, start+1, … (mod 256): fixed inputs that
// anyone can rebuild.
func seqBytes(start byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

// RFC 7748 §6.1 and RFC 5903 §8.1 inputs and outputs.
var (
	rfc7748Alice     = mustHex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
	rfc7748AlicePub  = mustHex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
	rfc7748Bob       = mustHex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
	rfc7748BobPub    = mustHex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
	rfc7748Shared    = mustHex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
	rfc5903I         = mustHex("C88F01F510D9AC3F70A292DAA2316DE544E9AAB8AFE84049C62A9C57862D1433")
	rfc5903GI        = mustHex("04 DAD0B65394221CF9B051E1FECA5787D098DFE637FC90B9EF945D0C3772581180 5271A0461CDB8252D61F1C456FA3E59AB1F45B33ACCF5F58389E0577B8990BB3")
	rfc5903R         = mustHex("C6EF9C5D78AE012A011164ACB397CE2088685D8F06BF9BE0B283AB46476BEE53")
	rfc5903GR        = mustHex("04 D12DFB5289C8D4F81208B70270398C342296970A0BCCB74C736FC7554494BF63 56FBF3CA366CC23E8157854C13C58D6AAC23F046ADA30F8353E74F33039872AB")
	rfc5903SharedX   = mustHex("D6840F6B42F6EDAFD13116E0E12565202FEF8E9ECE7DCE03812464D04B9442DE")
	vectorSessionID  = seqBytes(0x40, SessionIDSize)
	vectorFixedClock = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
)

func TestVectors(t *testing.T) {
	got := generateVectors(t)
	out, err := json.MarshalIndent(got, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, '\n')
	if *updateVectors {
		if err := os.MkdirAll(filepath.Dir(vectorsPath), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(vectorsPath, out, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s (%d bytes)", vectorsPath, len(out))
		return
	}
	want, err := os.ReadFile(vectorsPath)
	if err != nil {
		t.Fatalf("%v (generate it with: go test ./protocol -run TestVectors -update)", err)
	}
	if !bytes.Equal(out, want) {
		t.Fatalf("the implementation no longer matches %s:\n%s\nIf the change of the wire format is deliberate, bump Version and rerun with -update.",
			vectorsPath, firstDifference(want, out))
	}
	var file vectorFile
	if err := json.Unmarshal(want, &file); err != nil {
		t.Fatal(err)
	}
	checkCommittedHybrid(t, file.Groups)
}

// firstDifference shows the first differing line of two JSON texts.
func firstDifference(want, got []byte) string {
	wl, gl := strings.Split(string(want), "\n"), strings.Split(string(got), "\n")
	for i := 0; i < max(len(wl), len(gl)); i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			ctx := ""
			for j := max(0, i-3); j < i && j < len(gl); j++ {
				ctx += "  " + gl[j] + "\n"
			}
			return fmt.Sprintf("line %d:\n%s- %s\n+ %s", i+1, ctx, w, g)
		}
	}
	return "(no line differs)"
}

// checkCommittedHybrid decapsulates the committed hybrid server share with
// the committed seed: the vector of the ML-KEM side does not depend on
// crypto/mlkem/mlkemtest staying deterministic.
func checkCommittedHybrid(t *testing.T, groups []groupVector) {
	t.Helper()
	for _, g := range groups {
		if g.Group != GroupX25519MLKEM768.Name() {
			continue
		}
		dk, err := mlkem.NewDecapsulationKey768(g.MLKEMSeed)
		if err != nil {
			t.Fatal(err)
		}
		x, err := ecdh.X25519().NewPrivateKey(g.ClientX25519Private)
		if err != nil {
			t.Fatal(err)
		}
		key := hybridClientKey{dk, x}
		if !bytes.Equal(key.Share(), g.ClientShare) {
			t.Fatal("hybrid: committed client share differs from the seed's")
		}
		shared, err := key.Finish(g.ServerShare)
		if err != nil || !bytes.Equal(shared, g.Shared) {
			t.Fatalf("hybrid: decapsulating the committed ciphertext: %x %v", shared, err)
		}
		return
	}
	t.Fatal("no hybrid group vector")
}

func generateVectors(t *testing.T) vectorFile {
	t.Helper()
	v := vectorFile{
		Comment: "caddy-drm protocol version 1 known-answer vectors (docs/PROTOCOL.md). Byte strings are hex. " +
			"Generated by go test ./protocol -run TestVectors -update; checked byte for byte by TestVectors.",
		Contexts: contextVectors{
			LabelPrefix:       []byte(labelPrefix),
			Transcript:        []byte(transcriptContext),
			RekeyTranscript:   []byte(rekeyTranscriptContext),
			ServerSignature:   []byte(serverSignatureContext),
			TrafficLabels:     []string{labelC2SKey, labelC2SMacKey, labelC2SIV, labelS2CKey, labelS2CMacKey, labelS2CIV},
			EpochLabel:        labelEpoch,
			ChainLabel:        labelChain,
			EnvelopeHeaderLen: EnvelopeHeaderSize,
			ReplyHeaderLen:    ResponseHeaderSize,
			ReplayWindowSize:  ReplayWindowSize,
		},
	}
	v.ExpandLabel = expandLabelVectors(t)
	v.KeySchedule = keyScheduleVectors(t)
	v.Traffic = trafficVectors(t)
	v.Groups = groupVectors(t)
	v.RequestHeaders, v.ResponseHeaders, v.ReplyAD, v.ChunkRequests = layoutVectors(t)
	v.Session, v.Transcripts, v.Signatures = sessionVectors(t)
	return v
}

// ---- Independent reference implementations -------------------------------

// refHKDFExtract and refHKDFExpand are RFC 5869 written from HMAC alone.
func refHKDFExtract(h crypto.Hash, salt, ikm []byte) []byte {
	if len(salt) == 0 {
		salt = make([]byte, h.Size())
	}
	m := hmac.New(h.New, salt)
	m.Write(ikm)
	return m.Sum(nil)
}

func refHKDFExpand(h crypto.Hash, prk, info []byte, n int) []byte {
	var out, prev []byte
	for i := byte(1); len(out) < n; i++ {
		m := hmac.New(h.New, prk)
		m.Write(prev)
		m.Write(info)
		m.Write([]byte{i})
		prev = m.Sum(nil)
		out = append(out, prev...)
	}
	return out[:n]
}

// refInfo is the HkdfLabel structure as docs/PROTOCOL.md spells it:
// uint16 length ‖ uint8 len ‖ "caddy-drm/1 " ‖ label ‖ uint8 len ‖ context.
func refInfo(label string, context []byte, n int) []byte {
	full := "caddy-drm/1 " + label
	info := []byte{byte(n >> 8), byte(n), byte(len(full))}
	info = append(info, full...)
	info = append(info, byte(len(context)))
	return append(info, context...)
}

func refExpandLabel(h crypto.Hash, secret []byte, label string, context []byte, n int) []byte {
	return refHKDFExpand(h, secret, refInfo(label, context, n), n)
}

// refTranscript is the transcript hash: context, then each part with a
// 32-bit big-endian length.
func refTranscript(h crypto.Hash, context string, parts ...[]byte) []byte {
	var buf []byte
	buf = append(buf, context...)
	for _, p := range parts {
		buf = append(buf, byte(len(p)>>24), byte(len(p)>>16), byte(len(p)>>8), byte(len(p)))
		buf = append(buf, p...)
	}
	d := h.New()
	d.Write(buf)
	return d.Sum(nil)
}

// refNonce is iv XOR the sequence number, right-aligned, big-endian.
func refNonce(iv []byte, seq uint64) []byte {
	n := bytes.Clone(iv)
	for i := 0; i < 8; i++ {
		n[len(n)-1-i] ^= byte(seq >> (8 * i))
	}
	return n
}

// refSeal seals a record without the package's cipher code: AES-GCM and
// ChaCha20-Poly1305 through their standard constructors, and the
// encrypt-then-MAC modes built here from the AES block function alone, as
// cipher.go documents them: CBC with IV = E_K(nonce ‖ 0^32) and PKCS#7
// padding, CTR with the counter block nonce ‖ uint32 counter from 0, then
// HMAC(mac key, nonce ‖ uint64 len(ad) ‖ ad ‖ ciphertext) appended.
func refSeal(t *testing.T, s Suite, key, macKey, nonce, ad, plaintext []byte) []byte {
	t.Helper()
	switch s.Cipher {
	case CipherAES128GCM, CipherAES256GCM:
		b, err := aes.NewCipher(key)
		if err != nil {
			t.Fatal(err)
		}
		g, err := cipher.NewGCM(b)
		if err != nil {
			t.Fatal(err)
		}
		return g.Seal(nil, nonce, plaintext, ad)
	case CipherChaCha20Poly1305:
		c, err := chacha20poly1305.New(key)
		if err != nil {
			t.Fatal(err)
		}
		return c.Seal(nil, nonce, plaintext, ad)
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	var ct []byte
	switch s.Cipher {
	case CipherAES128CBC, CipherAES256CBC:
		pad := 16 - len(plaintext)%16
		padded := append(bytes.Clone(plaintext), bytes.Repeat([]byte{byte(pad)}, pad)...)
		prev := make([]byte, 16)
		copy(prev, nonce) // nonce ‖ 0^32
		b.Encrypt(prev, prev)
		for i := 0; i < len(padded); i += 16 {
			blk := make([]byte, 16)
			for j := range blk {
				blk[j] = padded[i+j] ^ prev[j]
			}
			b.Encrypt(blk, blk)
			ct = append(ct, blk...)
			prev = blk
		}
	case CipherAES128CTR, CipherAES256CTR:
		for i := 0; i < len(plaintext); i += 16 {
			ctr := make([]byte, 16)
			copy(ctr, nonce)
			binary.BigEndian.PutUint32(ctr[12:], uint32(i/16))
			b.Encrypt(ctr, ctr)
			for j := i; j < min(i+16, len(plaintext)); j++ {
				ct = append(ct, plaintext[j]^ctr[j-i])
			}
		}
	default:
		t.Fatalf("no reference for %s", s.Cipher.Name())
	}
	m := hmac.New(s.Hash.New, macKey)
	m.Write(nonce)
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(ad)))
	m.Write(n[:])
	m.Write(ad)
	m.Write(ct)
	return m.Sum(ct)
}

// ---- Vector sections -----------------------------------------------------

func expandLabelVectors(t *testing.T) []expandLabelVector {
	t.Helper()
	cases := []struct {
		h       crypto.Hash
		secret  []byte
		label   string
		context []byte
		n       int
	}{
		{crypto.SHA256, seqBytes(0x00, 32), labelC2SKey, nil, 16},
		{crypto.SHA256, seqBytes(0x00, 32), labelS2CIV, nil, NonceSize},
		{crypto.SHA384, seqBytes(0x80, 48), labelEpoch, seqBytes(0x10, 48), 48},
		{crypto.SHA384, seqBytes(0x80, 48), labelC2SMacKey, nil, 48},
	}
	var out []expandLabelVector
	for _, c := range cases {
		got := expandLabel(c.h, c.secret, c.label, c.context, c.n)
		if want := refExpandLabel(c.h, c.secret, c.label, c.context, c.n); !bytes.Equal(got, want) {
			t.Fatalf("expandLabel(%s, %q) = %x, reference HKDF says %x", hashName(c.h), c.label, got, want)
		}
		out = append(out, expandLabelVector{
			Hash: hashName(c.h), Secret: c.secret, Label: c.label, Context: hexBytes(nonNil(c.context)),
			Length: c.n, Info: refInfo(c.label, c.context, c.n), Output: got,
		})
	}
	return out
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func keyScheduleVectors(t *testing.T) []keyScheduleVector {
	t.Helper()
	var out []keyScheduleVector
	for _, h := range hashes {
		var prev []byte
		for epoch := 0; epoch < 2; epoch++ {
			shared := seqBytes(byte(0x20*epoch+0x01), 32)
			th := seqBytes(byte(0x20*epoch+0x90), h.Size())
			e := DeriveEpoch(h, shared, prev, th)
			prk := refHKDFExtract(h, prev, shared)
			if want := refExpandLabel(h, prk, "epoch", th, h.Size()); !bytes.Equal(e.Secret, want) {
				t.Fatalf("%s epoch %d: DeriveEpoch secret %x, reference %x", hashName(h), epoch, e.Secret, want)
			}
			if want := refExpandLabel(h, e.Secret, "chain", nil, h.Size()); !bytes.Equal(e.Chain, want) {
				t.Fatalf("%s epoch %d: DeriveEpoch chain %x, reference %x", hashName(h), epoch, e.Chain, want)
			}
			out = append(out, keyScheduleVector{
				Hash: hashName(h), Shared: shared, PrevChain: prev, TranscriptHash: th,
				PRK: prk, EpochSecret: e.Secret, Chain: e.Chain,
			})
			prev = e.Chain
		}
	}
	return out
}

func keysVector(k *TrafficKeys) directionKeys {
	d := directionKeys{Key: k.Key, IV: bytes.Clone(k.IV[:])}
	if k.MACKey != nil {
		d.MACKey = k.MACKey
	}
	return d
}

func trafficVectors(t *testing.T) []trafficVector {
	t.Helper()
	names := []string{
		"X25519_AES128_GCM_SHA256",
		"X25519_AES256_GCM_SHA384",
		"X25519_CHACHA20_POLY1305_SHA256",
		"X25519_AES128_CBC_SHA256", "X25519_AES128_CBC_SHA384",
		"X25519_AES256_CBC_SHA256", "X25519_AES256_CBC_SHA384",
		"X25519_AES128_CTR_SHA256", "X25519_AES128_CTR_SHA384",
		"X25519_AES256_CTR_SHA256", "X25519_AES256_CTR_SHA384",
	}
	covered := map[string]bool{}
	var out []trafficVector
	for _, name := range names {
		s, err := ParseSuite(name)
		if err != nil {
			t.Fatal(err)
		}
		covered[s.Cipher.Name()] = true
		secret := seqBytes(0x30, s.Hash.Size())
		c2s, err := deriveTraffic(s, secret, clientToServer)
		if err != nil {
			t.Fatal(err)
		}
		s2c, err := deriveTraffic(s, secret, serverToClient)
		if err != nil {
			t.Fatal(err)
		}
		// The labels and sizes of docs/PROTOCOL.md, recomputed.
		for _, d := range []struct {
			k                *TrafficKeys
			key, mac, ivName string
		}{{c2s, "c2s key", "c2s mac", "c2s iv"}, {s2c, "s2c key", "s2c mac", "s2c iv"}} {
			if want := refExpandLabel(s.Hash, secret, d.key, nil, s.Cipher.KeySize()); !bytes.Equal(d.k.Key, want) {
				t.Fatalf("%s %s: %x, reference %x", name, d.key, d.k.Key, want)
			}
			if want := refExpandLabel(s.Hash, secret, d.ivName, nil, NonceSize); !bytes.Equal(d.k.IV[:], want) {
				t.Fatalf("%s %s: %x, reference %x", name, d.ivName, d.k.IV, want)
			}
			wantMAC := 0
			if strings.Contains(name, "_CBC_") || strings.Contains(name, "_CTR_") {
				wantMAC = s.Hash.Size()
			}
			if len(d.k.MACKey) != wantMAC {
				t.Fatalf("%s: MAC key of %d bytes, want %d", name, len(d.k.MACKey), wantMAC)
			}
			if wantMAC > 0 {
				if want := refExpandLabel(s.Hash, secret, d.mac, nil, wantMAC); !bytes.Equal(d.k.MACKey, want) {
					t.Fatalf("%s %s: %x, reference %x", name, d.mac, d.k.MACKey, want)
				}
			}
		}
		// newEpochKeys is DeriveEpoch then deriveTraffic.
		shared, th := seqBytes(0x01, 32), seqBytes(0x90, s.Hash.Size())
		ek, err := newEpochKeys(s, 0, shared, nil, th)
		if err != nil {
			t.Fatal(err)
		}
		e := DeriveEpoch(s.Hash, shared, nil, th)
		ref, _ := deriveTraffic(s, e.Secret, clientToServer)
		if !bytes.Equal(ek.c2s.Key, ref.Key) || ek.c2s.IV != ref.IV || !bytes.Equal(ek.chain, e.Chain) {
			t.Fatalf("%s: newEpochKeys differs from DeriveEpoch + deriveTraffic", name)
		}

		tv := trafficVector{Suite: name, EpochSecret: secret, C2S: keysVector(c2s), S2C: keysVector(s2c)}
		records := []struct {
			dir       string
			k         *TrafficKeys
			seq       uint64
			ad, plain []byte
		}{
			{"c2s", c2s, 0, seqBytes(0xd0, EnvelopeHeaderSize), seqBytes(0x00, 37)},
			{"s2c", s2c, 0x0011223344556677, seqBytes(0xe0, ResponseHeaderSize+SessionIDSize+2+8), seqBytes(0x60, 32)},
		}
		for _, r := range records {
			nonce := r.k.nonce(r.seq)
			if want := refNonce(r.k.IV[:], r.seq); !bytes.Equal(nonce[:], want) {
				t.Fatalf("%s: nonce %x, reference %x", name, nonce, want)
			}
			sealed := r.k.seal(nil, r.seq, r.plain, r.ad)
			if want := refSeal(t, s, r.k.Key, r.k.MACKey, nonce[:], r.ad, r.plain); !bytes.Equal(sealed, want) {
				t.Fatalf("%s %s: sealed %x\nreference          %x", name, r.dir, sealed, want)
			}
			if len(sealed)-len(r.plain) > r.k.Overhead() {
				t.Fatalf("%s: overhead %d exceeds Overhead() %d", name, len(sealed)-len(r.plain), r.k.Overhead())
			}
			opened, err := r.k.open(nil, r.seq, sealed, r.ad)
			if err != nil || !bytes.Equal(opened, r.plain) {
				t.Fatalf("%s %s: does not open: %v", name, r.dir, err)
			}
			// Wrong sequence number or associated data: refused.
			if _, err := r.k.open(nil, r.seq+1, sealed, r.ad); !errors.Is(err, ErrAuthentication) {
				t.Fatalf("%s: opened under the next sequence number", name)
			}
			tv.Records = append(tv.Records, recordVector{
				Direction: r.dir, Seq: r.seq, Nonce: bytes.Clone(nonce[:]), AD: r.ad, Plaintext: r.plain, Sealed: sealed,
			})
		}
		out = append(out, tv)
	}
	for _, c := range ciphers {
		if !covered[c.Name()] {
			t.Fatalf("no traffic vector for cipher %s", c.Name())
		}
	}
	return out
}

// fixedReader hands out fixed bytes, then fails.
type fixedReader struct{ b []byte }

func (r *fixedReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, errors.New("fixedReader: exhausted")
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

func groupVectors(t *testing.T) []groupVector {
	t.Helper()
	var out []groupVector

	// X25519 with the RFC 7748 §6.1 keys, through the group's own code.
	{
		a, _ := ecdh.X25519().NewPrivateKey(rfc7748Alice)
		b, _ := ecdh.X25519().NewPrivateKey(rfc7748Bob)
		ck := ecdhClientKey{a}
		if !bytes.Equal(ck.Share(), rfc7748AlicePub) || !bytes.Equal(b.PublicKey().Bytes(), rfc7748BobPub) {
			t.Fatal("X25519 public keys differ from RFC 7748")
		}
		cs, err := ck.Finish(b.PublicKey().Bytes())
		if err != nil || !bytes.Equal(cs, rfc7748Shared) {
			t.Fatalf("X25519 client secret %x %v, RFC 7748 says %x", cs, err, rfc7748Shared)
		}
		ss, err := ecdhShared(b, ck.Share())
		if err != nil || !bytes.Equal(ss, rfc7748Shared) {
			t.Fatalf("X25519 server secret %x %v", ss, err)
		}
		out = append(out, groupVector{Group: "X25519", ClientPrivate: rfc7748Alice, ServerPrivate: rfc7748Bob,
			ClientShare: ck.Share(), ServerShare: b.PublicKey().Bytes(), Shared: cs})
	}

	// P-256 with the RFC 5903 §8.1 keys: uncompressed points, secret = x.
	{
		i, err := ecdh.P256().NewPrivateKey(rfc5903I)
		if err != nil {
			t.Fatal(err)
		}
		r, _ := ecdh.P256().NewPrivateKey(rfc5903R)
		ck := ecdhClientKey{i}
		if !bytes.Equal(ck.Share(), rfc5903GI) || !bytes.Equal(r.PublicKey().Bytes(), rfc5903GR) {
			t.Fatal("P-256 public keys differ from RFC 5903")
		}
		cs, err := ck.Finish(r.PublicKey().Bytes())
		if err != nil || !bytes.Equal(cs, rfc5903SharedX) {
			t.Fatalf("P-256 client secret %x %v, RFC 5903 says %x", cs, err, rfc5903SharedX)
		}
		ss, err := ecdhShared(r, ck.Share())
		if err != nil || !bytes.Equal(ss, cs) {
			t.Fatalf("P-256 server secret %x %v", ss, err)
		}
		// Compressed points are not accepted.
		compressed := append([]byte{2 + rfc5903GR[64]&1}, rfc5903GR[1:33]...)
		if _, err := ck.Finish(compressed); !errors.Is(err, ErrKeyShare) {
			t.Fatalf("compressed P-256 share: %v", err)
		}
		out = append(out, groupVector{Group: "P256", ClientPrivate: rfc5903I, ServerPrivate: rfc5903R,
			ClientShare: ck.Share(), ServerShare: r.PublicKey().Bytes(), Shared: cs})
	}

	// FFDHE2048: the exponents are the 32 bytes read from the random
	// source with the top bit set; these already have it.
	{
		cx, sx := seqBytes(0x80, 32), seqBytes(0xa0, 32)
		ckey, err := GroupFFDHE2048.GenerateKey(&fixedReader{bytes.Clone(cx)})
		if err != nil {
			t.Fatal(err)
		}
		serverShare, ss, err := GroupFFDHE2048.Respond(&fixedReader{bytes.Clone(sx)}, ckey.Share())
		if err != nil {
			t.Fatal(err)
		}
		cs, err := ckey.Finish(serverShare)
		if err != nil || !bytes.Equal(cs, ss) {
			t.Fatalf("FFDHE2048: client %x server %x %v", cs, ss, err)
		}
		// Independently: g^x mod p, left-padded to 256 bytes.
		p := ffdhe2048Reference(t)
		pad := func(x *big.Int) []byte { return x.FillBytes(make([]byte, 256)) }
		cxi, sxi := new(big.Int).SetBytes(cx), new(big.Int).SetBytes(sx)
		if want := pad(new(big.Int).Exp(big.NewInt(2), cxi, p)); !bytes.Equal(ckey.Share(), want) {
			t.Fatal("FFDHE2048 client share is not 2^x mod p")
		}
		if want := pad(new(big.Int).Exp(big.NewInt(2), sxi, p)); !bytes.Equal(serverShare, want) {
			t.Fatal("FFDHE2048 server share is not 2^y mod p")
		}
		if want := pad(new(big.Int).Exp(new(big.Int).SetBytes(serverShare), cxi, p)); !bytes.Equal(cs, want) {
			t.Fatal("FFDHE2048 secret is not Y^x mod p")
		}
		// Out-of-range shares are refused: 0, 1, p-1, p, and short ones.
		pm1 := new(big.Int).Sub(p, big.NewInt(1))
		for _, bad := range [][]byte{make([]byte, 256), pad(big.NewInt(1)), pad(pm1), pad(p), cs[:255]} {
			if _, err := ckey.Finish(bad); !errors.Is(err, ErrKeyShare) {
				t.Fatalf("FFDHE2048 accepted a bad share: %v", err)
			}
		}
		out = append(out, groupVector{Group: "FFDHE2048", ClientPrivate: cx, ServerPrivate: sx,
			ClientShare: ckey.Share(), ServerShare: serverShare, Shared: cs})
	}

	// X25519MLKEM768: ML-KEM-768 first, as in TLS.
	{
		seed, m := seqBytes(0x00, mlkem.SeedSize), seqBytes(0x50, 32)
		dk, err := mlkem.NewDecapsulationKey768(seed)
		if err != nil {
			t.Fatal(err)
		}
		a, _ := ecdh.X25519().NewPrivateKey(rfc7748Alice)
		ck := hybridClientKey{dk, a}
		share := ck.Share()
		if len(share) != mlkem.EncapsulationKeySize768+32 ||
			!bytes.Equal(share[:mlkem.EncapsulationKeySize768], dk.EncapsulationKey().Bytes()) ||
			!bytes.Equal(share[mlkem.EncapsulationKeySize768:], rfc7748AlicePub) {
			t.Fatal("hybrid client share is not ek ‖ X25519 public key")
		}
		mk, ct, err := mlkemtest.Encapsulate768(dk.EncapsulationKey(), m)
		if err != nil {
			t.Fatal(err)
		}
		serverShare := append(bytes.Clone(ct), rfc7748BobPub...)
		shared, err := ck.Finish(serverShare)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(shared, append(bytes.Clone(mk), rfc7748Shared...)) {
			t.Fatalf("hybrid secret is not ML-KEM key ‖ X25519 secret: %x", shared)
		}
		// The server side, with its own randomness, agrees with the client.
		ss, sec, err := GroupX25519MLKEM768.Respond(rand.Reader, share)
		if err != nil {
			t.Fatal(err)
		}
		if cs, err := ck.Finish(ss); err != nil || !bytes.Equal(cs, sec) {
			t.Fatalf("hybrid Respond and Finish disagree: %v", err)
		}
		out = append(out, groupVector{Group: "X25519MLKEM768", MLKEMSeed: seed, MLKEMEncapsRandom: m,
			ClientX25519Private: rfc7748Alice, ServerX25519Private: rfc7748Bob,
			ClientShare: share, ServerShare: serverShare, Shared: shared})
	}
	if len(out) != len(groups) {
		t.Fatalf("%d group vectors for %d groups", len(out), len(groups))
	}
	return out
}

// ffdhe2048Reference rebuilds the RFC 7919 prime from its definition,
// p = 2^2048 − 2^1984 + (⌊2^1918·e⌋ + 560316)·2^64 − 1, with e summed as
// Σ 1/k! in exact integer arithmetic, and checks that kex.go's constant
// is that prime.
func ffdhe2048Reference(t *testing.T) *big.Int {
	t.Helper()
	const n = 400 // 400! > 2^2800: the tail of the series is far below 2^-1918
	nf := big.NewInt(1)
	for k := int64(2); k <= n; k++ {
		nf.Mul(nf, big.NewInt(k))
	}
	// sum = Σ_{k=0..n} n!/k!
	sum, term := new(big.Int), big.NewInt(1)
	for k := int64(n); k >= 0; k-- {
		sum.Add(sum, term)
		term.Mul(term, big.NewInt(k))
	}
	x := new(big.Int).Lsh(sum, 1918)
	x.Quo(x, nf)
	x.Add(x, big.NewInt(560316))
	p := new(big.Int).Lsh(big.NewInt(1), 2048)
	p.Sub(p, new(big.Int).Lsh(big.NewInt(1), 1984))
	p.Add(p, x.Lsh(x, 64))
	p.Sub(p, big.NewInt(1))
	if p.Cmp(ffdhe2048P) != 0 {
		t.Fatalf("kex.go's ffdhe2048 prime differs from RFC 7919's definition:\n%x\n%x", ffdhe2048P, p)
	}
	return p
}

func TestFFDHE2048Prime(t *testing.T) {
	p := ffdhe2048P
	if p == nil || p.BitLen() != 2048 {
		t.Fatalf("ffdhe2048 prime has %d bits", p.BitLen())
	}
	q := new(big.Int).Rsh(new(big.Int).Sub(p, big.NewInt(1)), 1)
	if !p.ProbablyPrime(20) {
		t.Fatal("p is not prime")
	}
	if !q.ProbablyPrime(20) {
		t.Fatal("(p-1)/2 is not prime: p is not a safe prime")
	}
	ffdhe2048Reference(t)
	if ffdheG.Cmp(big.NewInt(2)) != 0 || ffdheMaxPub.Cmp(new(big.Int).Sub(p, big.NewInt(1))) != 0 {
		t.Fatal("generator or share bound changed")
	}
}

func layoutVectors(t *testing.T) ([]requestHeaderVector, []responseHeaderVector, []replyADVector, []chunkRequestVector) {
	t.Helper()
	var reqs []requestHeaderVector
	for _, h := range []RequestHeader{
		{Type: MsgCatalog, Epoch: 0, Seq: 0},
		{Type: MsgChunk, Epoch: 0x01020304, Seq: 0x0011223344556677},
		{Type: MsgClientAuth, Epoch: 7, Seq: 1},
	} {
		copy(h.SessionID[:], vectorSessionID)
		enc := h.appendTo(nil)
		// By hand: version type session_id epoch seq.
		want := []byte{Version, byte(h.Type)}
		want = append(want, vectorSessionID...)
		want = append(want, byte(h.Epoch>>24), byte(h.Epoch>>16), byte(h.Epoch>>8), byte(h.Epoch))
		for i := 7; i >= 0; i-- {
			want = append(want, byte(h.Seq>>(8*i)))
		}
		if !bytes.Equal(enc, want) || len(enc) != EnvelopeHeaderSize {
			t.Fatalf("request header %+v encodes as %x, want %x", h, enc, want)
		}
		back, err := ParseRequestHeader(enc)
		if err != nil || back != h {
			t.Fatalf("request header does not round-trip: %+v %v", back, err)
		}
		reqs = append(reqs, requestHeaderVector{Type: uint8(h.Type), TypeName: h.Type.String(), SessionID: vectorSessionID,
			Epoch: h.Epoch, Seq: h.Seq, Encoding: enc})
	}

	var resps []responseHeaderVector
	var ads []replyADVector
	for _, c := range []struct {
		h       ResponseHeader
		mediaID string
	}{
		{ResponseHeader{Type: MsgCatalog, Epoch: 0, Seq: 0}, ""},
		{ResponseHeader{Type: MsgChunk, Flags: FlagFinal | FlagRekeySoon, Epoch: 7, Seq: 0x0011223344556677, Index: 3,
			MediaSize: 0x000102030405, Remaining: 12}, "albums/track01.flac"},
	} {
		h := c.h
		enc := h.appendTo(nil)
		want := []byte{Version, byte(h.Type), h.Flags}
		want = binary.BigEndian.AppendUint32(want, h.Epoch)
		want = binary.BigEndian.AppendUint64(want, h.Seq)
		want = binary.BigEndian.AppendUint64(want, h.Index)
		want = binary.BigEndian.AppendUint64(want, h.MediaSize)
		want = binary.BigEndian.AppendUint32(want, h.Remaining)
		if !bytes.Equal(enc, want) || len(enc) != ResponseHeaderSize {
			t.Fatalf("response header %+v encodes as %x, want %x", h, enc, want)
		}
		back, err := ParseResponseHeader(enc)
		if err != nil || back != h {
			t.Fatalf("response header does not round-trip: %+v %v", back, err)
		}
		resps = append(resps, responseHeaderVector{Type: uint8(h.Type), TypeName: h.Type.String(), Flags: h.Flags,
			Epoch: h.Epoch, Seq: h.Seq, Index: h.Index, MediaSize: h.MediaSize, Remaining: h.Remaining, Encoding: enc})
		ad := replyAD(nil, &h, vectorSessionID, c.mediaID)
		wantAD := append(bytes.Clone(enc), vectorSessionID...)
		wantAD = append(wantAD, byte(len(c.mediaID)>>8), byte(len(c.mediaID)))
		wantAD = append(wantAD, c.mediaID...)
		if !bytes.Equal(ad, wantAD) {
			t.Fatalf("reply AD %x, want %x", ad, wantAD)
		}
		ads = append(ads, replyADVector{ResponseHeader: enc, SessionID: vectorSessionID, MediaID: c.mediaID, AD: ad})
	}

	var chunks []chunkRequestVector
	for _, c := range []ChunkRequest{{"a", 0}, {"albums/track01.flac", 0x0102030405}, {"ünï/код.opus", 1}} {
		enc := c.Marshal()
		want := binary.BigEndian.AppendUint64(nil, c.Index)
		want = append(want, c.MediaID...)
		if !bytes.Equal(enc, want) {
			t.Fatalf("chunk request %+v encodes as %x", c, enc)
		}
		back, err := ParseChunkRequest(enc)
		if err != nil || back != c {
			t.Fatalf("chunk request does not round-trip: %+v %v", back, err)
		}
		chunks = append(chunks, chunkRequestVector{MediaID: c.MediaID, Index: c.Index, Payload: enc})
	}
	return reqs, resps, ads, chunks
}

func epochVec(k *epochKeys, secret []byte) epochVector {
	return epochVector{EpochSecret: secret, Chain: k.chain, C2S: keysVector(k.c2s), S2C: keysVector(k.s2c)}
}

// sessionVectors runs a whole session with fixed randoms through the real
// client and server code: handshake, catalog, chunk, rekey, chunk.
func sessionVectors(t *testing.T) (sessionVector, []transcriptVector, []signatureVector) {
	t.Helper()
	suite, _ := ParseSuite("X25519_AES128_GCM_SHA256")
	seed := seqBytes(0x60, ed25519.SeedSize)
	signer := ed25519.NewKeyFromSeed(seed)
	pub := signer.Public().(ed25519.PublicKey)
	limits := DefaultLimits()
	const chunkSize = DefaultChunkSize
	certificate := []byte("DER certificate chain, leaf first (opaque to the protocol)")

	ch := ClientHello{Version: Version, Random: seqBytes(0x00, RandomSize), Suites: []string{suite.Name()},
		KeyShares: map[string][]byte{"X25519": rfc7748AlicePub}}
	hello, _ := json.Marshal(ch)
	if _, err := ParseClientHello(hello); err != nil {
		t.Fatal(err)
	}
	sh := ServerHello{Version: Version, Random: seqBytes(0x20, RandomSize), Suite: suite.Name(), SessionID: vectorSessionID,
		KeyShare: rfc7748BobPub, Certificates: [][]byte{certificate}, ChunkSize: chunkSize, Limits: limits}
	shBytes, _ := json.Marshal(sh)
	if _, err := ParseServerHello(shBytes); err != nil {
		t.Fatal(err)
	}
	th := transcriptHash(suite.Hash, transcriptContext, hello, shBytes)
	if want := refTranscript(crypto.SHA256, "caddy-drm/1 transcript\x00", hello, shBytes); !bytes.Equal(th, want) {
		t.Fatalf("transcript hash %x, reference %x", th, want)
	}
	sig, err := SignTranscript(signer, th)
	if err != nil {
		t.Fatal(err)
	}
	content := append([]byte("caddy-drm/1 server signature\x00"), th...)
	if !ed25519.Verify(pub, content, sig) {
		t.Fatal("the signature is not Ed25519 over context ‖ transcript hash")
	}
	reply, _ := json.Marshal(Signed{Message: shBytes, Signature: sig})

	// The client's real Finish, with the RFC 7748 key as its share.
	a, _ := ecdh.X25519().NewPrivateKey(rfc7748Alice)
	ccfg := &ClientConfig{Suites: []Suite{suite}, VerifyCertificate: func(chain [][]byte) (crypto.PublicKey, error) {
		if len(chain) != 1 || !bytes.Equal(chain[0], certificate) {
			return nil, errors.New("not the vector's certificate")
		}
		return pub, nil
	}}
	hs := &ClientHandshake{cfg: ccfg, hello: hello, keys: map[string]ClientKey{"X25519": ecdhClientKey{a}}}
	client, err := hs.Finish(reply)
	if err != nil {
		t.Fatal(err)
	}
	keys0, err := newEpochKeys(suite, 0, rfc7748Shared, nil, th)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(client.current.c2s.Key, keys0.c2s.Key) || !bytes.Equal(client.current.s2c.Key, keys0.s2c.Key) {
		t.Fatal("the client's epoch 0 differs from the key schedule's")
	}
	secret0 := DeriveEpoch(suite.Hash, rfc7748Shared, nil, th).Secret
	server := &ServerSession{Suite: suite, ChunkSize: chunkSize, limits: limits, signer: signer,
		now: func() time.Time { return vectorFixedClock }}
	copy(server.ID[:], vectorSessionID)
	server.install(keys0)

	catalog := []MediaInfo{{ID: "albums/track01.flac", Title: "Track 01", Size: 100, ContentType: "audio/flac", Duration: 1.5}}
	catalogJSON, _ := json.Marshal(catalog)
	chunkData := seqBytes(0x00, 100)

	exchange := func(r *Request, answer func(a *Accepted) []byte, open func(reply []byte) []byte) exchangeVec {
		a, err := server.OpenRequest(r.Envelope)
		if err != nil {
			t.Fatal(err)
		}
		rep := answer(a)
		return exchangeVec{Type: a.Header.Type.String(), Seq: a.Header.Seq, Payload: nonNil(a.Payload), Envelope: r.Envelope, Reply: rep, Answer: nonNil(open(rep))}
	}
	sealReply := func(payload []byte) func(*Accepted) []byte {
		return func(a *Accepted) []byte {
			rep, err := server.SealReply(a, payload)
			if err != nil {
				t.Fatal(err)
			}
			return rep
		}
	}
	sealChunk := func(a *Accepted) []byte {
		cr, err := ParseChunkRequest(a.Payload)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := server.SealChunk(nil, a, cr.MediaID, cr.Index, uint64(len(chunkData)), chunkData)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	openReply := func(r *Request) func([]byte) []byte {
		return func(rep []byte) []byte {
			out, err := r.OpenReply(rep)
			if err != nil {
				t.Fatal(err)
			}
			return out
		}
	}
	openChunk := func(r *Request) func([]byte) []byte {
		return func(rep []byte) []byte {
			h, out, err := r.OpenChunk(nil, rep)
			if err != nil {
				t.Fatal(err)
			}
			if h.Flags&FlagFinal == 0 || h.Remaining != limits.Chunks-1 {
				t.Fatalf("chunk header %+v", h)
			}
			return out
		}
	}

	var exchanges []exchangeVec
	catReq := client.NewRequest(MsgCatalog, nil)
	exchanges = append(exchanges, exchange(catReq, sealReply(catalogJSON), openReply(catReq)))
	chunkReq, _ := client.NewChunkRequest(catalog[0].ID, 0)
	exchanges = append(exchanges, exchange(chunkReq, sealChunk, openChunk(chunkReq)))

	// Rekey with fixed randoms: the server half is built by hand (its
	// Rekey draws fresh randomness) and checked by the client's Finish.
	c2, _ := ecdh.X25519().NewPrivateKey(seqBytes(0x90, 32))
	s2, _ := ecdh.X25519().NewPrivateKey(seqBytes(0xb0, 32))
	rkPayload, _ := json.Marshal(RekeyRequest{Random: seqBytes(0x80, RandomSize), KeyShare: c2.PublicKey().Bytes()})
	rkReq := client.NewRequest(MsgRekey, rkPayload)
	rka, err := server.OpenRequest(rkReq.Envelope)
	if err != nil || !bytes.Equal(rka.Payload, rkPayload) {
		t.Fatalf("rekey request: %v", err)
	}
	rkHello, _ := json.Marshal(RekeyHello{Epoch: 1, Random: seqBytes(0xa0, RandomSize), KeyShare: s2.PublicKey().Bytes(), Limits: limits})
	th1 := transcriptHash(suite.Hash, rekeyTranscriptContext, th, rkPayload, rkHello)
	if want := refTranscript(crypto.SHA256, "caddy-drm/1 rekey transcript\x00", th, rkPayload, rkHello); !bytes.Equal(th1, want) {
		t.Fatal("rekey transcript differs from the reference")
	}
	sig1, _ := SignTranscript(signer, th1)
	signed1, _ := json.Marshal(Signed{Message: rkHello, Signature: sig1})
	rkReply := server.seal(nil, keys0, &ResponseHeader{Type: MsgRekey, Epoch: 0, Seq: rka.Header.Seq}, "", signed1)
	rk := &Rekey{Request: rkReq, key: ecdhClientKey{c2}, payload: rkPayload}
	if err := rk.Finish(rkReply); err != nil {
		t.Fatal(err)
	}
	shared1, _ := ecdhShared(s2, c2.PublicKey().Bytes())
	keys1, err := newEpochKeys(suite, 1, shared1, keys0.chain, th1)
	if err != nil {
		t.Fatal(err)
	}
	if client.Epoch() != 1 || !bytes.Equal(client.current.c2s.Key, keys1.c2s.Key) {
		t.Fatal("the client's epoch 1 differs from the key schedule's")
	}
	secret1 := DeriveEpoch(suite.Hash, shared1, keys0.chain, th1).Secret
	server.install(keys1)

	var epoch1 []exchangeVec
	chunkReq1, _ := client.NewChunkRequest(catalog[0].ID, 0)
	epoch1 = append(epoch1, exchange(chunkReq1, sealChunk, openChunk(chunkReq1)))
	closeReq := client.NewRequest(MsgClose, nil)
	epoch1 = append(epoch1, exchange(closeReq, sealReply(nil), openReply(closeReq)))

	sv := sessionVector{
		Suite: suite.Name(), ServerSeed: seed, ClientPrivate: rfc7748Alice, ServerPrivate: rfc7748Bob,
		ClientHello: hello, ServerHello: shBytes, TranscriptHash: th, Signature: sig, HandshakeReply: reply,
		Shared: rfc7748Shared, Epoch0: epochVec(keys0, secret0), Exchanges: exchanges,
		Rekey: rekeyVector{ClientPrivate: seqBytes(0x90, 32), ServerPrivate: seqBytes(0xb0, 32), Payload: rkPayload,
			Envelope: rkReq.Envelope, Hello: rkHello, TranscriptHash: th1, Signature: sig1, Signed: signed1,
			Reply: rkReply, Shared: shared1},
		Epoch1: epochVec(keys1, secret1), Epoch1Exchanges: epoch1,
		Catalog: catalog, Limits: limits, ChunkSize: chunkSize,
	}

	// The same handshake messages under SHA-384, for the transcript vectors.
	suite384, _ := ParseSuite("X25519_AES256_GCM_SHA384")
	ch384 := ch
	ch384.Suites = []string{suite384.Name()}
	hello384, _ := json.Marshal(ch384)
	sh384 := sh
	sh384.Suite = suite384.Name()
	shBytes384, _ := json.Marshal(sh384)
	th384 := transcriptHash(crypto.SHA384, transcriptContext, hello384, shBytes384)
	if want := refTranscript(crypto.SHA384, transcriptContext, hello384, shBytes384); !bytes.Equal(th384, want) {
		t.Fatal("SHA-384 transcript differs from the reference")
	}
	transcripts := []transcriptVector{
		{Name: "handshake", Hash: "SHA256", Context: transcriptContext, Parts: []hexBytes{hello, shBytes}, TranscriptHash: th},
		{Name: "rekey", Hash: "SHA256", Context: rekeyTranscriptContext, Parts: []hexBytes{th, rkPayload, rkHello}, TranscriptHash: th1},
		{Name: "handshake", Hash: "SHA384", Context: transcriptContext, Parts: []hexBytes{hello384, shBytes384}, TranscriptHash: th384},
	}
	signatures := []signatureVector{
		{KeyType: "ed25519", PrivateSeed: seed, PublicKey: []byte(pub), TranscriptHash: th, SignedContent: content, Signature: sig},
		{KeyType: "ed25519", PrivateSeed: seed, PublicKey: []byte(pub), TranscriptHash: th384,
			SignedContent: append([]byte(serverSignatureContext), th384...), Signature: mustSign(t, signer, th384)},
	}
	for _, s := range signatures {
		if err := VerifyTranscript(pub, s.TranscriptHash, s.Signature); err != nil {
			t.Fatal(err)
		}
	}
	return sv, transcripts, signatures
}

func mustSign(t *testing.T, signer crypto.Signer, th []byte) []byte {
	t.Helper()
	sig, err := SignTranscript(signer, th)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// TestSignatureSchemes checks the signature schemes of docs/PROTOCOL.md
// section 9 against signatures made and checked by the standard library
// directly: ECDSA over SHA-256/384(context ‖ transcript hash), RSA-PSS with
// SHA-256 and a 32-byte salt, and nothing else.
func TestSignatureSchemes(t *testing.T) {
	th := seqBytes(0x11, 48)
	content := append([]byte("caddy-drm/1 server signature\x00"), th...)
	digest := func(h crypto.Hash) []byte {
		d := h.New()
		d.Write(content)
		return d.Sum(nil)
	}
	for _, c := range []struct {
		curve elliptic.Curve
		h     crypto.Hash
	}{{elliptic.P256(), crypto.SHA256}, {elliptic.P384(), crypto.SHA384}} {
		key, err := ecdsa.GenerateKey(c.curve, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		sig, err := ecdsa.SignASN1(rand.Reader, key, digest(c.h))
		if err != nil {
			t.Fatal(err)
		}
		if err := VerifyTranscript(&key.PublicKey, th, sig); err != nil {
			t.Fatalf("%s: a standard signature does not verify: %v", c.curve.Params().Name, err)
		}
		own := mustSign(t, key, th)
		if !ecdsa.VerifyASN1(&key.PublicKey, digest(c.h), own) {
			t.Fatalf("%s: SignTranscript is not ECDSA over %v(content)", c.curve.Params().Name, c.h)
		}
	}

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	own := mustSign(t, key, th)
	if err := rsa.VerifyPSS(&key.PublicKey, crypto.SHA256, digest(crypto.SHA256), own, &rsa.PSSOptions{SaltLength: 32, Hash: crypto.SHA256}); err != nil {
		t.Fatalf("SignTranscript is not RSA-PSS-SHA256 with a 32-byte salt: %v", err)
	}
	sig, _ := rsa.SignPSS(rand.Reader, key, crypto.SHA256, digest(crypto.SHA256), &rsa.PSSOptions{SaltLength: 32})
	if err := VerifyTranscript(&key.PublicKey, th, sig); err != nil {
		t.Fatalf("a standard RSA-PSS signature does not verify: %v", err)
	}
	// Other RSA parameters are refused.
	maxSalt, _ := rsa.SignPSS(rand.Reader, key, crypto.SHA256, digest(crypto.SHA256), &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto})
	pkcs1, _ := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest(crypto.SHA256))
	sha384, _ := rsa.SignPSS(rand.Reader, key, crypto.SHA384, digest(crypto.SHA384), &rsa.PSSOptions{SaltLength: 48})
	for name, bad := range map[string][]byte{"PSS with the longest salt": maxSalt, "PKCS #1 v1.5": pkcs1, "PSS with SHA-384": sha384} {
		if err := VerifyTranscript(&key.PublicKey, th, bad); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s accepted: %v", name, err)
		}
	}
	// Unsupported keys.
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	small := &rsa.PublicKey{N: new(big.Int).Add(new(big.Int).Lsh(big.NewInt(1), 2046), big.NewInt(1)), E: 65537}
	for _, pub := range []crypto.PublicKey{&p521.PublicKey, small} {
		if err := VerifyTranscript(pub, th, []byte{1}); err == nil {
			t.Errorf("%T accepted", pub)
		}
	}
	if _, err := SignTranscript(p521, th); err == nil {
		t.Error("SignTranscript with a P-521 key")
	}
}
