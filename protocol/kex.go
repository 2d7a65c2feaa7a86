package protocol

import (
	"crypto/ecdh"
	"crypto/mlkem"
	"fmt"
	"io"
	"math/big"
)

// Group is a key-exchange group. The client makes a key share; the server
// answers with its own share and both sides derive the same secret.
// Every group here is ephemeral: a new key for every handshake and rekey.
type kexGroup interface {
	Name() string
	// generateKey makes the client's ephemeral key and its share.
	generateKey(rand io.Reader) (clientKey, error)
	// respond makes the server's ephemeral key for the client's share and
	// returns the server's share and the shared secret.
	respond(rand io.Reader, clientShare []byte) (serverShare, secret []byte, err error)
}

// ClientKey is the client's half of an exchange in progress.
type clientKey interface {
	share() []byte
	// finish derives the shared secret from the server's share.
	finish(serverShare []byte) ([]byte, error)
}

var (
	groupX25519         kexGroup = ecdhGroup{"X25519", ecdh.X25519()}
	groupP256           kexGroup = ecdhGroup{"P256", ecdh.P256()}
	groupFFDHE2048      kexGroup = ffdheGroup{}
	groupX25519MLKEM768 kexGroup = hybridGroup{}
)

var groups = []kexGroup{groupX25519MLKEM768, groupX25519, groupP256, groupFFDHE2048}

// groupByName finds a group by its wire name.
func groupByName(name string) (kexGroup, bool) {
	for _, g := range groups {
		if g.Name() == name {
			return g, true
		}
	}
	return nil, false
}

type ecdhGroup struct {
	name  string
	curve ecdh.Curve
}

func (g ecdhGroup) Name() string { return g.name }

type ecdhClientKey struct{ priv *ecdh.PrivateKey }

func (g ecdhGroup) generateKey(rand io.Reader) (clientKey, error) {
	priv, err := g.curve.GenerateKey(rand)
	if err != nil {
		return nil, err
	}
	return ecdhClientKey{priv}, nil
}

func (k ecdhClientKey) share() []byte { return k.priv.PublicKey().Bytes() }

func (k ecdhClientKey) finish(serverShare []byte) ([]byte, error) {
	return ecdhShared(k.priv, serverShare)
}

func (g ecdhGroup) respond(rand io.Reader, clientShare []byte) ([]byte, []byte, error) {
	priv, err := g.curve.GenerateKey(rand)
	if err != nil {
		return nil, nil, err
	}
	secret, err := ecdhShared(priv, clientShare)
	if err != nil {
		return nil, nil, err
	}
	return priv.PublicKey().Bytes(), secret, nil
}

// ecdhShared rejects invalid points and, for X25519, low-order points
// (crypto/ecdh returns an error for an all-zero result).
func ecdhShared(priv *ecdh.PrivateKey, peer []byte) ([]byte, error) {
	pub, err := priv.Curve().NewPublicKey(peer)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errKeyShare, err)
	}
	secret, err := priv.ECDH(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errKeyShare, err)
	}
	return secret, nil
}

// hybridGroup is X25519MLKEM768 as in TLS (draft-ietf-tls-ecdhe-mlkem):
// client share = ML-KEM-768 encapsulation key ‖ X25519 public key, server
// share = ML-KEM ciphertext ‖ X25519 public key, secret = ML-KEM shared
// key ‖ X25519 shared secret. It stays secure if either half holds.
type hybridGroup struct{}

func (hybridGroup) Name() string { return "X25519MLKEM768" }

type hybridClientKey struct {
	dk *mlkem.DecapsulationKey768
	x  *ecdh.PrivateKey
}

func (hybridGroup) generateKey(rand io.Reader) (clientKey, error) {
	var seed [mlkem.SeedSize]byte
	if _, err := io.ReadFull(rand, seed[:]); err != nil {
		return nil, err
	}
	dk, err := mlkem.NewDecapsulationKey768(seed[:])
	if err != nil {
		return nil, err
	}
	x, err := ecdh.X25519().GenerateKey(rand)
	if err != nil {
		return nil, err
	}
	return hybridClientKey{dk, x}, nil
}

func (k hybridClientKey) share() []byte {
	return append(k.dk.EncapsulationKey().Bytes(), k.x.PublicKey().Bytes()...)
}

func (k hybridClientKey) finish(serverShare []byte) ([]byte, error) {
	if len(serverShare) != mlkem.CiphertextSize768+32 {
		return nil, fmt.Errorf("%w: hybrid server share is %d bytes", errKeyShare, len(serverShare))
	}
	mk, err := k.dk.Decapsulate(serverShare[:mlkem.CiphertextSize768])
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errKeyShare, err)
	}
	xs, err := ecdhShared(k.x, serverShare[mlkem.CiphertextSize768:])
	if err != nil {
		return nil, err
	}
	return append(mk, xs...), nil
}

func (hybridGroup) respond(rand io.Reader, clientShare []byte) ([]byte, []byte, error) {
	if len(clientShare) != mlkem.EncapsulationKeySize768+32 {
		return nil, nil, fmt.Errorf("%w: hybrid client share is %d bytes", errKeyShare, len(clientShare))
	}
	ek, err := mlkem.NewEncapsulationKey768(clientShare[:mlkem.EncapsulationKeySize768])
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", errKeyShare, err)
	}
	// crypto/mlkem and crypto/ecdh (since Go 1.26) draw their own
	// randomness; rand feeds only the ffdhe2048 exponents.
	mk, ct := ek.Encapsulate()
	x, err := ecdh.X25519().GenerateKey(rand)
	if err != nil {
		return nil, nil, err
	}
	xs, err := ecdhShared(x, clientShare[mlkem.EncapsulationKeySize768:])
	if err != nil {
		return nil, nil, err
	}
	return append(ct, x.PublicKey().Bytes()...), append(mk, xs...), nil
}

// ffdheGroup is the RFC 7919 ffdhe2048 group: a fixed, published safe
// prime, never parameters generated per session. Private exponents are 256
// bits, above the 225 bits RFC 7919 §5.2 asks for this group. math/big is
// not constant-time, which is one reason this group is not in the default
// suites.
type ffdheGroup struct{}

const ffdhe2048Size = 256

var ffdhe2048P, _ = new(big.Int).SetString(
	"FFFFFFFFFFFFFFFFADF85458A2BB4A9AAFDC5620273D3CF1"+
		"D8B9C583CE2D3695A9E13641146433FBCC939DCE249B3EF9"+
		"7D2FE363630C75D8F681B202AEC4617AD3DF1ED5D5FD6561"+
		"2433F51F5F066ED0856365553DED1AF3B557135E7F57C935"+
		"984F0C70E0E68B77E2A689DAF3EFE8721DF158A136ADE735"+
		"30ACCA4F483A797ABC0AB182B324FB61D108A94BB2C8E3FB"+
		"B96ADAB760D7F4681D4F42A3DE394DF4AE56EDE76372BB19"+
		"0B07A7C8EE0A6D709E02FCE1CDF7E2ECC03404CD28342F61"+
		"9172FE9CE98583FF8E4F1232EEF28183C3FE3B1B4C6FAD73"+
		"3BB5FCBC2EC22005C58EF1837D1683B2C6F34A26C1B2EFFA"+
		"886B423861285C97FFFFFFFFFFFFFFFF", 16)

var (
	ffdheG       = big.NewInt(2)
	ffdheMaxPub  = new(big.Int).Sub(ffdhe2048P, big.NewInt(1))
	ffdheExpBits = 256
)

func (ffdheGroup) Name() string { return "FFDHE2048" }

type ffdheClientKey struct{ x, pub *big.Int }

func ffdheKey(rand io.Reader) (x, pub *big.Int, err error) {
	b := make([]byte, ffdheExpBits/8)
	if _, err := io.ReadFull(rand, b); err != nil {
		return nil, nil, err
	}
	b[0] |= 0x80 // full-length exponent, never 0 or 1
	x = new(big.Int).SetBytes(b)
	return x, new(big.Int).Exp(ffdheG, x, ffdhe2048P), nil
}

// ffdhePeer accepts only 1 < y < p-1: with a safe prime that excludes the
// small subgroups {1} and {1, p-1}.
func ffdhePeer(share []byte) (*big.Int, error) {
	if len(share) != ffdhe2048Size {
		return nil, fmt.Errorf("%w: ffdhe2048 share is %d bytes, want %d", errKeyShare, len(share), ffdhe2048Size)
	}
	y := new(big.Int).SetBytes(share)
	if y.Cmp(big.NewInt(1)) <= 0 || y.Cmp(ffdheMaxPub) >= 0 {
		return nil, fmt.Errorf("%w: ffdhe2048 share out of range", errKeyShare)
	}
	return y, nil
}

func (ffdheGroup) generateKey(rand io.Reader) (clientKey, error) {
	x, pub, err := ffdheKey(rand)
	if err != nil {
		return nil, err
	}
	return ffdheClientKey{x, pub}, nil
}

func (k ffdheClientKey) share() []byte { return k.pub.FillBytes(make([]byte, ffdhe2048Size)) }

func (k ffdheClientKey) finish(serverShare []byte) ([]byte, error) {
	y, err := ffdhePeer(serverShare)
	if err != nil {
		return nil, err
	}
	return new(big.Int).Exp(y, k.x, ffdhe2048P).FillBytes(make([]byte, ffdhe2048Size)), nil
}

func (ffdheGroup) respond(rand io.Reader, clientShare []byte) ([]byte, []byte, error) {
	y, err := ffdhePeer(clientShare)
	if err != nil {
		return nil, nil, err
	}
	x, pub, err := ffdheKey(rand)
	if err != nil {
		return nil, nil, err
	}
	secret := new(big.Int).Exp(y, x, ffdhe2048P).FillBytes(make([]byte, ffdhe2048Size))
	return pub.FillBytes(make([]byte, ffdhe2048Size)), secret, nil
}
