package protocol

// Vectors of the key schedule, the record layer and the key-exchange
// groups (see vectors_test.go). Besides building the sections, each
// function checks what only the Go side can: the package's internal steps
// agree with each other (newEpochKeys is deriveEpoch then deriveTraffic),
// records open again and refuse a wrong sequence number, and the ECDH
// groups give the RFC 7748 and RFC 5903 results.

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/mlkem"
	"crypto/mlkem/mlkemtest"
	"crypto/rand"
	"errors"
	"hash"
	"math/big"
	"testing"
)

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
		{crypto.SHA256, seqBytes(0x00, 32), labelS2CIV, nil, nonceSize},
		{crypto.SHA384, seqBytes(0x80, 48), labelEpoch, seqBytes(0x10, 48), 48},
		{crypto.SHA384, seqBytes(0x80, 48), labelC2SMacKey, nil, 48},
	}
	var out []expandLabelVector
	for _, c := range cases {
		out = append(out, expandLabelVector{
			Hash: hashName(c.h), Secret: c.secret, Label: c.label, Context: hexBytes(nonNil(c.context)),
			Length: c.n, Info: labelInfo(c.label, c.context, c.n), Output: expandLabel(c.h, c.secret, c.label, c.context, c.n),
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
			secret := epochSecret(h, shared, prev, th)
			chain := expandLabel(h, secret, labelChain, nil, h.Size())
			salt := prev
			if salt == nil {
				salt = make([]byte, h.Size())
			}
			prk, err := hkdf.Extract(func() hash.Hash { return h.New() }, shared, salt)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, keyScheduleVector{
				Hash: hashName(h), Shared: shared, PrevChain: prev, TranscriptHash: th,
				PRK: prk, EpochSecret: secret, Chain: chain,
			})
			prev = chain
		}
	}
	return out
}

// keysVector is one direction's keys of an epoch secret, expanded again
// (the traffic keys keep only their AEAD and IV).
func keysVector(s Suite, secret []byte, d direction) directionKeys {
	k := directionKeys{
		Key: expandLabel(s.hash, secret, d.key, nil, s.cipher.keyLen()),
		IV:  expandLabel(s.hash, secret, d.iv, nil, nonceSize),
	}
	if n := s.cipher.macKeyLen(s.hash); n > 0 {
		k.MACKey = expandLabel(s.hash, secret, d.mac, nil, n)
	}
	return k
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
		s, err := parseSuite(name)
		if err != nil {
			t.Fatal(err)
		}
		covered[s.cipher.Name()] = true
		secret := seqBytes(0x30, s.hash.Size())
		c2s, err := deriveTraffic(s, secret, clientToServer)
		if err != nil {
			t.Fatal(err)
		}
		s2c, err := deriveTraffic(s, secret, serverToClient)
		if err != nil {
			t.Fatal(err)
		}
		// newEpochKeys is epochSecret then epochFromSecret.
		shared, th := seqBytes(0x01, 32), seqBytes(0x90, s.hash.Size())
		ek, err := newEpochKeys(s, 0, shared, nil, th)
		if err != nil {
			t.Fatal(err)
		}
		ref, _ := epochFromSecret(s, 0, epochSecret(s.hash, shared, nil, th), th)
		if !sameKeys(ek, ref) {
			t.Fatalf("%s: newEpochKeys differs from epochSecret + epochFromSecret", name)
		}

		tv := trafficVector{Suite: name, EpochSecret: secret, C2S: keysVector(s, secret, clientToServer), S2C: keysVector(s, secret, serverToClient)}
		records := []struct {
			dir       string
			k         *trafficKeys
			seq       uint64
			ad, plain []byte
		}{
			{"c2s", c2s, 0, seqBytes(0xd0, requestHeaderSize), seqBytes(0x00, 37)},
			{"s2c", s2c, 0x0011223344556677, seqBytes(0xe0, ReplyHeaderSize+sessionIDSize+2+8), seqBytes(0x60, 32)},
		}
		for _, r := range records {
			nonce := r.k.nonce(r.seq)
			sealed := r.k.seal(nil, r.seq, r.plain, r.ad)
			if len(sealed)-len(r.plain) > r.k.overhead() || r.k.overhead() > maxSealOverhead {
				t.Fatalf("%s: overhead %d exceeds overhead() %d", name, len(sealed)-len(r.plain), r.k.overhead())
			}
			opened, err := r.k.open(nil, r.seq, sealed, r.ad)
			if err != nil || !bytes.Equal(opened, r.plain) {
				t.Fatalf("%s %s: does not open: %v", name, r.dir, err)
			}
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
	out := []groupVector{
		ecdhVector(t, "X25519", ecdh.X25519(), rfc7748Alice, rfc7748Bob, rfc7748Shared),
		ecdhVector(t, "P256", ecdh.P256(), rfc5903I, rfc5903R, rfc5903SharedX),
		ffdheVector(t),
		hybridVector(t),
	}
	if len(out) != len(groups) {
		t.Fatalf("%d group vectors for %d groups", len(out), len(groups))
	}
	return out
}

// ecdhVector runs the group's own code on fixed RFC keys and checks the
// RFC's shared secret.
func ecdhVector(t *testing.T, name string, curve ecdh.Curve, clientPriv, serverPriv, wantShared []byte) groupVector {
	t.Helper()
	c, err := curve.NewPrivateKey(clientPriv)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := curve.NewPrivateKey(serverPriv)
	ck := ecdhClientKey{c}
	cs, err := ck.finish(s.PublicKey().Bytes())
	if err != nil || !bytes.Equal(cs, wantShared) {
		t.Fatalf("%s client secret %x %v, the RFC says %x", name, cs, err, wantShared)
	}
	if ss, err := ecdhShared(s, ck.share()); err != nil || !bytes.Equal(ss, wantShared) {
		t.Fatalf("%s server secret %x %v", name, ss, err)
	}
	return groupVector{Group: name, ClientPrivate: clientPriv, ServerPrivate: serverPriv,
		ClientShare: ck.share(), ServerShare: s.PublicKey().Bytes(), Shared: cs}
}

// ffdheVector uses exponents (the 32 bytes read from the random source,
// top bit set) chosen so that the shared secret starts with a zero byte:
// the vector then shows the left padding of §7.
func ffdheVector(t *testing.T) groupVector {
	t.Helper()
	cx := seqBytes(0x80, 32)
	ckey, err := groupFFDHE2048.generateKey(&fixedReader{bytes.Clone(cx)})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4096 {
		sx := seqBytes(0xa0, 32)
		sx[30], sx[31] = byte(i>>8), byte(i)
		serverShare, ss, err := groupFFDHE2048.respond(&fixedReader{bytes.Clone(sx)}, ckey.share())
		if err != nil {
			t.Fatal(err)
		}
		if ss[0] != 0 {
			continue
		}
		cs, err := ckey.finish(serverShare)
		if err != nil || !bytes.Equal(cs, ss) || len(cs) != ffdhe2048Size {
			t.Fatalf("FFDHE2048: client %x server %x %v", cs, ss, err)
		}
		return groupVector{Group: "FFDHE2048", ClientPrivate: cx, ServerPrivate: sx,
			ClientShare: ckey.share(), ServerShare: serverShare, Shared: cs}
	}
	t.Fatal("FFDHE2048: no exponent gives a secret with a leading zero byte")
	return groupVector{}
}

// hybridVector is X25519MLKEM768 with a fixed ML-KEM seed and
// encapsulation randomness, and the RFC 7748 X25519 keys.
func hybridVector(t *testing.T) groupVector {
	t.Helper()
	seed, m := seqBytes(0x00, mlkem.SeedSize), seqBytes(0x50, 32)
	dk, err := mlkem.NewDecapsulationKey768(seed)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := ecdh.X25519().NewPrivateKey(rfc7748Alice)
	ck := hybridClientKey{dk, a}
	share := ck.share()
	mk, ct, err := mlkemtest.Encapsulate768(dk.EncapsulationKey(), m)
	if err != nil {
		t.Fatal(err)
	}
	serverShare := append(bytes.Clone(ct), rfc7748BobPub...)
	shared, err := ck.finish(serverShare)
	if err != nil || !bytes.Equal(shared[:len(mk)], mk) {
		t.Fatalf("hybrid secret does not start with the ML-KEM key: %x %v", shared, err)
	}
	// The server side, with its own randomness, agrees with the client.
	ss, sec, err := groupX25519MLKEM768.respond(rand.Reader, share)
	if err != nil {
		t.Fatal(err)
	}
	if cs, err := ck.finish(ss); err != nil || !bytes.Equal(cs, sec) {
		t.Fatalf("hybrid respond and finish disagree: %v", err)
	}
	return groupVector{Group: "X25519MLKEM768", MLKEMSeed: seed, MLKEMEncapsRandom: m,
		ClientX25519Private: rfc7748Alice, ServerX25519Private: rfc7748Bob,
		ClientShare: share, ServerShare: serverShare, Shared: shared}
}

// TestFFDHEShares refuses the shares §7 excludes: 0, 1, p−1, p and
// shares of the wrong length.
func TestFFDHEShares(t *testing.T) {
	p := ffdhe2048P
	if !p.ProbablyPrime(20) || !new(big.Int).Rsh(p, 1).ProbablyPrime(20) {
		t.Fatal("ffdhe2048 is not a safe prime")
	}
	ckey, err := groupFFDHE2048.generateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pad := func(x *big.Int) []byte { return x.FillBytes(make([]byte, ffdhe2048Size)) }
	for _, bad := range [][]byte{make([]byte, 256), pad(big.NewInt(1)), pad(ffdheMaxPub), pad(p), make([]byte, 255)} {
		if _, err := ckey.finish(bad); !errors.Is(err, errKeyShare) {
			t.Fatalf("accepted a bad share: %v", err)
		}
	}
}

// TestECDHShares refuses a compressed P-256 point and a low-order X25519
// point.
func TestECDHShares(t *testing.T) {
	i, _ := ecdh.P256().NewPrivateKey(rfc5903I)
	compressed := append([]byte{2 + rfc5903GR[64]&1}, rfc5903GR[1:33]...)
	if _, err := (ecdhClientKey{i}).finish(compressed); !errors.Is(err, errKeyShare) {
		t.Fatalf("compressed P-256 share: %v", err)
	}
	a, _ := ecdh.X25519().NewPrivateKey(rfc7748Alice)
	if _, err := (ecdhClientKey{a}).finish(make([]byte, 32)); !errors.Is(err, errKeyShare) {
		t.Fatalf("low-order X25519 share: %v", err)
	}
}
