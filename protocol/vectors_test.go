package protocol

// Known-answer vectors of the wire protocol (docs/PROTOCOL.md §19).
//
// TestVectors computes every vector from fixed inputs through the code of
// this package and compares the result, byte for byte, with the committed
// testdata/vectors.json. An independent implementation written from the
// specification alone, testdata/ref (Python), recomputes the same file in
// `make test`; together they tie the code, the file and the spec. After a
// deliberate change of the wire format or the key schedule, regenerate the
// file with
//
//	go test ./protocol -run TestVectors -update
//
// review the diff, and extend testdata/ref to match.
//
// The sections are built in vectors_crypto_test.go (key schedule, records,
// groups) and vectors_session_test.go (layouts, a whole session,
// signatures).

import (
	"bytes"
	"crypto/ecdh"
	"crypto/mlkem"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
	ClientAuth      clientAuthVector       `json:"client_auth"`
	// SignatureChecks are signatures of the randomised schemes (ECDSA,
	// RSA-PSS) over a transcript hash: an implementation verifies them.
	SignatureChecks []signatureCheckVector `json:"signature_checks"`
	// Manifests are publisher-signed manifests (§22).
	Manifests []manifestVector `json:"manifests"`
}

type contextVectors struct {
	LabelPrefix       hexBytes `json:"label_prefix"`
	Transcript        hexBytes `json:"transcript"`
	RekeyTranscript   hexBytes `json:"rekey_transcript"`
	ServerSignature   hexBytes `json:"server_signature"`
	ClientCredentials hexBytes `json:"client_credentials"`
	DeviceSignature   hexBytes `json:"device_signature"`
	UserSignature     hexBytes `json:"user_signature"`
	DeviceRekey       hexBytes `json:"device_rekey"`
	ManifestSignature hexBytes `json:"manifest_signature"`
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

type signatureCheckVector struct {
	KeyType        string   `json:"key_type"`
	PublicKey      hexBytes `json:"public_key"` // DER SubjectPublicKeyInfo
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
	Ticket    hexBytes `json:"ticket,omitempty"`
	Encoding  hexBytes `json:"encoding"`
}

// ticketVectorJSON is a ticket (§16) sealed with a fixed key and nonce.
type ticketVectorJSON struct {
	KeyID  uint32   `json:"key_id"`
	Key    hexBytes `json:"key"`
	Nonce  hexBytes `json:"nonce"`
	AD     hexBytes `json:"ad"`
	State  hexBytes `json:"state"` // the JSON of ticketState
	Ticket hexBytes `json:"ticket"`
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
	PlayID  hexBytes `json:"play_id"`
	Payload hexBytes `json:"payload"`
}

// sessionVector is a whole session with fixed randoms: handshake, a
// catalog and two chunk exchanges (the second final and flagged rekey
// soon), a rekey, then a chunk and a close under the new epoch.
type sessionVector struct {
	Suite           string            `json:"suite"`
	ServerSeed      hexBytes          `json:"server_ed25519_seed"`
	Certificate     hexBytes          `json:"server_certificate"` // DER, self-signed by the seed's key
	ClientPrivate   hexBytes          `json:"client_x25519_private"`
	ServerPrivate   hexBytes          `json:"server_x25519_private"`
	ClientHello     hexBytes          `json:"client_hello"`
	ServerHello     hexBytes          `json:"server_hello"`
	Ticket          *ticketVectorJSON `json:"ticket"`
	TranscriptHash  hexBytes          `json:"transcript_hash"`
	Signature       hexBytes          `json:"signature"`
	HandshakeReply  hexBytes          `json:"handshake_reply"`
	Shared          hexBytes          `json:"shared"`
	Epoch0          epochVector       `json:"epoch0"`
	Exchanges       []exchangeVec     `json:"exchanges"`
	Rekey           rekeyVector       `json:"rekey"`
	Epoch1          epochVector       `json:"epoch1"`
	Epoch1Exchanges []exchangeVec     `json:"epoch1_exchanges"`
	Catalog         []MediaInfo       `json:"catalog"`
	Medium          hexBytes          `json:"medium"` // the catalog's one medium
	Limits          EpochLimits       `json:"limits"`
	ChunkSize       int               `json:"chunk_size"`
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
	vectorSessionID  = seqBytes(0x40, sessionIDSize)
	vectorFixedClock = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
)

func TestVectors(t *testing.T) {
	want, err := os.ReadFile(vectorsPath)
	if err != nil && !*updateVectors {
		t.Fatalf("%v (generate it with: go test ./protocol -run TestVectors -update)", err)
	}
	var committed vectorFile
	if err == nil {
		if err := json.Unmarshal(want, &committed); err != nil && !*updateVectors {
			t.Fatal(err)
		}
	}
	got := generateVectors(t, committed.SignatureChecks)
	out, err := json.MarshalIndent(got, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, '\n')
	if *updateVectors {
		if err := os.WriteFile(vectorsPath, out, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s (%d bytes)", vectorsPath, len(out))
		return
	}
	if !bytes.Equal(out, want) {
		t.Fatalf("the implementation no longer matches %s:\n%s\nIf the change is deliberate, rerun with -update and extend testdata/ref.",
			vectorsPath, firstDifference(want, out))
	}
	checkCommittedHybrid(t, committed.Groups)
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
		if g.Group != groupX25519MLKEM768.Name() {
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
		if !bytes.Equal(key.share(), g.ClientShare) {
			t.Fatal("hybrid: committed client share differs from the seed's")
		}
		shared, err := key.finish(g.ServerShare)
		if err != nil || !bytes.Equal(shared, g.Shared) {
			t.Fatalf("hybrid: decapsulating the committed ciphertext: %x %v", shared, err)
		}
		return
	}
	t.Fatal("no hybrid group vector")
}

func generateVectors(t *testing.T, signatureChecks []signatureCheckVector) vectorFile {
	t.Helper()
	v := vectorFile{
		Comment: "caddy-drm protocol version 1 known-answer vectors (docs/PROTOCOL.md). Byte strings are hex. " +
			"Generated by go test ./protocol -run TestVectors -update; checked byte for byte by TestVectors " +
			"and recomputed by the independent reference in testdata/ref.",
		Contexts: contextVectors{
			LabelPrefix:       []byte(labelPrefix),
			Transcript:        []byte(transcriptContext),
			RekeyTranscript:   []byte(rekeyTranscriptContext),
			ServerSignature:   []byte(serverSignatureContext),
			ClientCredentials: []byte(clientAuthContext),
			DeviceSignature:   []byte(deviceSignatureContext),
			UserSignature:     []byte(userSignatureContext),
			DeviceRekey:       []byte(deviceRekeyContext),
			ManifestSignature: []byte(manifestSignatureContext),
			TrafficLabels:     []string{labelC2SKey, labelC2SMacKey, labelC2SIV, labelS2CKey, labelS2CMacKey, labelS2CIV},
			EpochLabel:        labelEpoch,
			ChainLabel:        labelChain,
			EnvelopeHeaderLen: requestHeaderSize,
			ReplyHeaderLen:    ReplyHeaderSize,
			ReplayWindowSize:  replayWindowSize,
		},
	}
	v.ExpandLabel = expandLabelVectors(t)
	v.KeySchedule = keyScheduleVectors(t)
	v.Traffic = trafficVectors(t)
	v.Groups = groupVectors(t)
	v.RequestHeaders, v.ResponseHeaders, v.ReplyAD, v.ChunkRequests = layoutVectors(t)
	v.Session, v.Transcripts, v.Signatures = sessionVectors(t)
	v.SignatureChecks = signatureCheckVectors(t, signatureChecks)
	v.ClientAuth = clientAuthVectors(t)
	v.Manifests = manifestVectors(t)
	return v
}
