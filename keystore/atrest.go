package keystore

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"filippo.io/age"
)

// At-rest keys: the age identities that decrypt sealed media (`caddy drm
// seal`). They live in one file, itself an age file encrypted to a
// passphrase (age's scrypt recipient), whose plaintext is the identities,
// one per line, newest first, each after comment lines saying when it was
// made and its recipient:
//
//	# caddy-drm at-rest identities, newest first
//	# created 2026-12-01T10:00:00Z
//	# recipient age1…
//	AGE-SECRET-KEY-1…
//
// Media are sealed to the newest identity; the older ones still decrypt
// what was sealed to them. Rotation: NewAtRestKey adds a newest identity
// (servers that load the file then decrypt both), the media are re-sealed
// to it, and RetireAtRestKey removes the old one. At no step does a server
// lack the identity of a file it serves.

// AtRestWorkFactor is the scrypt work factor (log2 of N) of the identity
// files NewAtRestKey creates: 18, age's default, takes about a second,
// once, when a server or a command opens the file. A file that exists
// keeps the factor it was made with when keys are added or retired. Tests
// lower it (set it before any test runs: it is not synchronised).
var AtRestWorkFactor = 18

// AtRestPassphraseEnv is the environment variable commands and servers
// read an identity file's passphrase from when no passphrase file is
// given.
const AtRestPassphraseEnv = "DRM_AT_REST_PASSPHRASE"

// atRestMaxWorkFactor bounds the work factor LoadAtRestKeys accepts (age's
// own bound: about 15 s), so a planted file cannot make a start hang.
const atRestMaxWorkFactor = 22

const atRestHeader = "# caddy-drm at-rest identities, newest first"

// ReadPassphrase returns the passphrase of an identity file: the contents
// of file (one trailing newline removed) if file is set, else the
// environment variable env if it is set and not empty. An empty
// passphrase, or neither source, is an error naming both. It is how
// services get theirs.
func ReadPassphrase(file, env string) ([]byte, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("keystore: passphrase: %w", err)
		}
		b = bytes.TrimSuffix(b, []byte("\n"))
		b = bytes.TrimSuffix(b, []byte("\r"))
		if len(b) == 0 {
			return nil, fmt.Errorf("keystore: the passphrase file %s is empty", file)
		}
		return b, nil
	}
	if v := os.Getenv(env); env != "" && v != "" {
		return []byte(v), nil
	}
	if env == "" {
		return nil, errors.New("keystore: no passphrase: no passphrase file given")
	}
	return nil, fmt.Errorf("keystore: no passphrase: no passphrase file given and $%s is not set", env)
}

// AtRestKeys is the content of an identity file.
type AtRestKeys struct {
	keys []atRestKey // newest first
}

type atRestKey struct {
	id        age.Identity
	recipient age.Recipient
	public    string   // the recipient's string
	secret    string   // the identity's line
	comments  []string // the comment lines before it
}

// Identities returns the identities, newest first: all of them decrypt.
func (k *AtRestKeys) Identities() []age.Identity {
	ids := make([]age.Identity, len(k.keys))
	for i, key := range k.keys {
		ids[i] = key.id
	}
	return ids
}

// Recipients returns the public recipients (age1… or age1pq1…), newest
// first.
func (k *AtRestKeys) Recipients() []string {
	rs := make([]string, len(k.keys))
	for i, key := range k.keys {
		rs[i] = key.public
	}
	return rs
}

// Newest returns the recipient media are sealed to: the newest identity's.
func (k *AtRestKeys) Newest() age.Recipient { return k.keys[0].recipient }

// NewestIdentity returns the newest identity: the one that opens what is
// sealed to Newest.
func (k *AtRestKeys) NewestIdentity() age.Identity { return k.keys[0].id }

// LoadAtRestKeys opens the identity file path with passphrase. A missing
// file, a wrong passphrase, a file that is not a passphrase-protected age
// file or holds no identity are errors that say so and name path.
func LoadAtRestKeys(path string, passphrase []byte) (*AtRestKeys, error) {
	k, _, err := loadAtRest(path, passphrase)
	return k, err
}

// loadAtRest reads the file and also returns its scrypt work factor.
func loadAtRest(path string, passphrase []byte) (*AtRestKeys, int, error) {
	if len(passphrase) == 0 {
		return nil, 0, fmt.Errorf("keystore: %s: an empty passphrase", path)
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, fmt.Errorf("keystore: the at-rest identity file %s does not exist (create it with 'caddy drm keys new')", path)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("keystore: %w", err)
	}
	logN, err := scryptWorkFactor(data)
	if err != nil {
		return nil, 0, fmt.Errorf("keystore: %s: %w", path, err)
	}
	if logN > atRestMaxWorkFactor {
		return nil, 0, fmt.Errorf("keystore: %s: scrypt work factor %d (at most %d)", path, logN, atRestMaxWorkFactor)
	}
	sid, err := age.NewScryptIdentity(string(passphrase))
	if err != nil {
		return nil, 0, fmt.Errorf("keystore: %s: %w", path, err)
	}
	sid.SetMaxWorkFactor(atRestMaxWorkFactor)
	r, err := age.Decrypt(bytes.NewReader(data), sid)
	if errors.Is(err, age.ErrIncorrectIdentity) {
		return nil, 0, fmt.Errorf("keystore: wrong passphrase for %s", path)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("keystore: %s: %w", path, err)
	}
	plain, err := io.ReadAll(r)
	if err != nil {
		return nil, 0, fmt.Errorf("keystore: %s: %w", path, err)
	}
	k, err := parseAtRest(plain)
	if err != nil {
		return nil, 0, fmt.Errorf("keystore: %s: %w", path, err)
	}
	return k, logN, nil
}

// scryptWorkFactor checks that data is an age file encrypted to a
// passphrase and returns its work factor.
func scryptWorkFactor(data []byte) (int, error) {
	const intro = "age-encryption.org/v1\n"
	if !bytes.HasPrefix(data, []byte(intro)) {
		return 0, errors.New("not an age file (not an at-rest identity file)")
	}
	line, _, _ := bytes.Cut(data[len(intro):], []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) != 4 || f[0] != "->" || f[1] != "scrypt" {
		return 0, errors.New("not encrypted to a passphrase (not an at-rest identity file)")
	}
	n, err := strconv.Atoi(f[3])
	if err != nil || n < 1 {
		return 0, fmt.Errorf("a malformed scrypt work factor %q", f[3])
	}
	return n, nil
}

// parseAtRest parses the plaintext of an identity file.
func parseAtRest(plain []byte) (*AtRestKeys, error) {
	k := &AtRestKeys{}
	var comments []string
	sc := bufio.NewScanner(bytes.NewReader(plain))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line == atRestHeader:
		case strings.HasPrefix(line, "#"):
			comments = append(comments, line)
		default:
			ids, err := age.ParseIdentities(strings.NewReader(line))
			if err != nil || len(ids) != 1 {
				// age's errors never quote the key.
				return nil, fmt.Errorf("line %d is not an age identity: %v", n, err)
			}
			key, err := newAtRestKey(ids[0], line, comments)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", n, err)
			}
			k.keys = append(k.keys, key)
			comments = nil
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(k.keys) == 0 {
		return nil, errors.New("no identity in the file")
	}
	return k, nil
}

func newAtRestKey(id age.Identity, secret string, comments []string) (atRestKey, error) {
	key := atRestKey{id: id, secret: secret, comments: comments}
	switch id := id.(type) {
	case *age.X25519Identity:
		key.recipient = id.Recipient()
	case *age.HybridIdentity:
		key.recipient = id.Recipient()
	default:
		return key, fmt.Errorf("an identity of type %T", id)
	}
	key.public = key.recipient.(fmt.Stringer).String()
	return key, nil
}

// marshal is the plaintext of the identity file.
func (k *AtRestKeys) marshal() []byte {
	var b strings.Builder
	b.WriteString(atRestHeader + "\n")
	for _, key := range k.keys {
		for _, c := range key.comments {
			b.WriteString(c + "\n")
		}
		b.WriteString(key.secret + "\n")
	}
	return []byte(b.String())
}

// NewAtRestKey generates an identity (X25519, or the hybrid post-quantum
// ML-KEM-768 + X25519 kind with postQuantum) and makes it the newest of
// the identity file path, creating the file if it does not exist (mode
// 0600, scrypt work factor AtRestWorkFactor). It returns the identity's
// recipient. Adding to an existing file is rotation's first step; the
// passphrase must be the file's.
func NewAtRestKey(path string, passphrase []byte, postQuantum bool) (recipient string, err error) {
	if len(passphrase) == 0 {
		return "", errors.New("keystore: an empty passphrase")
	}
	var id age.Identity
	var secret string
	if postQuantum {
		h, err := age.GenerateHybridIdentity()
		if err != nil {
			return "", fmt.Errorf("keystore: %w", err)
		}
		id, secret = h, h.String()
	} else {
		x, err := age.GenerateX25519Identity()
		if err != nil {
			return "", fmt.Errorf("keystore: %w", err)
		}
		id, secret = x, x.String()
	}
	key, err := newAtRestKey(id, secret, nil)
	if err != nil {
		return "", fmt.Errorf("keystore: %w", err)
	}
	key.comments = []string{"# created " + time.Now().UTC().Format(time.RFC3339), "# recipient " + key.public}
	err = updateAtRest(path, passphrase, true, func(k *AtRestKeys) error {
		k.keys = append([]atRestKey{key}, k.keys...)
		return nil
	})
	return key.public, err
}

// RetireAtRestKey removes the identity of recipient from the identity file
// path: rotation's last step, once nothing is sealed to it any more. It
// refuses to remove the file's last identity.
func RetireAtRestKey(path string, passphrase []byte, recipient string) error {
	return updateAtRest(path, passphrase, false, func(k *AtRestKeys) error {
		i := -1
		for j, key := range k.keys {
			if key.public == recipient {
				i = j
			}
		}
		switch {
		case i < 0:
			return fmt.Errorf("keystore: %s holds no identity of recipient %s", path, recipient)
		case len(k.keys) == 1:
			return fmt.Errorf("keystore: %s is the last identity of %s: add a new one first (rotation: new, seal, retire)", recipient, path)
		}
		k.keys = append(k.keys[:i:i], k.keys[i+1:]...)
		return nil
	})
}

// updateAtRest reads, changes and rewrites the identity file under its
// directory's lock (so two commands cannot lose each other's keys), through
// a synced temporary file renamed over it. create allows a missing file.
func updateAtRest(path string, passphrase []byte, create bool, change func(*AtRestKeys) error) error {
	dir := filepath.Dir(path)
	if create {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("keystore: %w", err)
		}
	}
	release, err := lockDir(dir)
	if err != nil {
		return err
	}
	defer release()
	k, logN := &AtRestKeys{}, AtRestWorkFactor
	if _, err := os.Stat(path); !create || !errors.Is(err, fs.ErrNotExist) {
		if k, logN, err = loadAtRest(path, passphrase); err != nil {
			return err
		}
	}
	if err := change(k); err != nil {
		return err
	}
	r, err := age.NewScryptRecipient(string(passphrase))
	if err != nil {
		return fmt.Errorf("keystore: %w", err)
	}
	r.SetWorkFactor(logN)
	var out bytes.Buffer
	w, err := age.Encrypt(&out, r)
	if err != nil {
		return fmt.Errorf("keystore: %w", err)
	}
	if _, err := w.Write(k.marshal()); err != nil {
		return fmt.Errorf("keystore: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("keystore: %w", err)
	}
	return writeReplace(path, out.Bytes(), 0o600)
}

// CheckOutside returns an error if any of paths (files that hold keys or
// passphrases) lies inside root (the folder an origin serves), after
// symbolic links are resolved: key custody means the identity that
// decrypts the media is never served with them. Empty paths are ignored;
// a path that does not exist yet is checked by its nearest existing parent.
func CheckOutside(root string, paths ...string) error {
	r, err := resolvePath(root)
	if err != nil {
		return fmt.Errorf("keystore: %w", err)
	}
	for _, p := range paths {
		if p == "" {
			continue
		}
		rp, err := resolvePath(p)
		if err != nil {
			return fmt.Errorf("keystore: %w", err)
		}
		if rel, err := filepath.Rel(r, rp); err == nil && (rel == "." || rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))) {
			return fmt.Errorf("keystore: %s lies inside %s: keys never live under the media's root", p, root)
		}
	}
	return nil
}

// resolvePath makes p absolute with its symbolic links resolved, as far
// as it exists.
func resolvePath(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	rest := ""
	for cur := abs; ; {
		if r, err := filepath.EvalSymlinks(cur); err == nil {
			return filepath.Join(r, rest), nil
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return abs, nil
		}
		rest = filepath.Join(filepath.Base(cur), rest)
		cur = parent
	}
}
