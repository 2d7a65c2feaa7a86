package licensing

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// The BoltStore's values are small JSON objects with a version, "v", so
// that a later format can be told from this one. A value of another
// version, or one that does not decode strictly, is an error: a store
// never guesses at a license.
const formatVersion = 1

type termsJSON struct {
	Views       uint32    `json:"views"`
	ExpireAfter int64     `json:"expire_after_ns,omitempty"`
	ExpireAt    time.Time `json:"expire_at,omitzero"`
}

type licenseJSON struct {
	V         int       `json:"v"`
	Terms     termsJSON `json:"terms"`
	ViewsLeft uint32    `json:"views_left"`
	ViewsUsed uint32    `json:"views_used"`
	Renewals  uint32    `json:"renewals"`
	Created   time.Time `json:"created,omitzero"`
	FirstPlay time.Time `json:"first_play,omitzero"`
	Expires   time.Time `json:"expires,omitzero"`
}

type playJSON struct {
	V        int       `json:"v"`
	Started  time.Time `json:"started"`
	LastSeen time.Time `json:"last_seen"`
	Bytes    int64     `json:"bytes"`
}

// encodeKey is subject and media, length-prefixed so that no pair of
// names collides and a subject's keys share a prefix.
func encodeKey(k Key) []byte {
	b := binary.AppendUvarint(nil, uint64(len(k.Subject)))
	b = append(b, k.Subject...)
	return append(b, k.Media...)
}

// subjectPrefix is the prefix of every key of subject.
func subjectPrefix(subject string) []byte {
	return append(binary.AppendUvarint(nil, uint64(len(subject))), subject...)
}

func decodeKey(b []byte) (Key, error) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)-w) {
		return Key{}, errors.New("licensing: malformed license key")
	}
	b = b[w:]
	return Key{Subject: string(b[:n]), Media: string(b[n:])}, nil
}

// encodeLicense fails only on times JSON cannot hold (years past 9999).
func encodeLicense(l License) ([]byte, error) {
	return json.Marshal(licenseJSON{
		V: formatVersion,
		Terms: termsJSON{
			Views:       l.Terms.Views,
			ExpireAfter: int64(l.Terms.ExpireAfter),
			ExpireAt:    l.Terms.ExpireAt,
		},
		ViewsLeft: l.ViewsLeft,
		ViewsUsed: l.ViewsUsed,
		Renewals:  l.Renewals,
		Created:   l.Created,
		FirstPlay: l.FirstPlay,
		Expires:   l.Expires,
	})
}

// decodeLicense decodes the license stored under key k with value v.
func decodeLicense(k, v []byte) (License, error) {
	key, err := decodeKey(k)
	if err != nil {
		return License{}, err
	}
	var j licenseJSON
	if err := strictJSON(v, &j); err != nil {
		return License{}, fmt.Errorf("licensing: malformed license of %q for %q: %w", key.Subject, key.Media, err)
	}
	if j.V != formatVersion {
		return License{}, fmt.Errorf("licensing: license of %q for %q has format version %d, not %d", key.Subject, key.Media, j.V, formatVersion)
	}
	if j.Terms.ExpireAfter < 0 {
		return License{}, fmt.Errorf("licensing: malformed license of %q for %q: negative expire_after_ns", key.Subject, key.Media)
	}
	return License{
		Key: key,
		Terms: Terms{
			Views:       j.Terms.Views,
			ExpireAfter: time.Duration(j.Terms.ExpireAfter),
			ExpireAt:    j.Terms.ExpireAt,
		},
		ViewsLeft: j.ViewsLeft,
		ViewsUsed: j.ViewsUsed,
		Renewals:  j.Renewals,
		Created:   j.Created,
		FirstPlay: j.FirstPlay,
		Expires:   j.Expires,
	}, nil
}

func encodePlay(r PlayRecord) ([]byte, error) {
	return json.Marshal(playJSON{V: formatVersion, Started: r.Started, LastSeen: r.LastSeen, Bytes: r.Bytes})
}

// decodePlay decodes the record of play id k with value v.
func decodePlay(k, v []byte) (PlayRecord, error) {
	if len(k) != len(PlayID{}) {
		return PlayRecord{}, errors.New("licensing: malformed play id")
	}
	var id PlayID
	copy(id[:], k)
	var j playJSON
	if err := strictJSON(v, &j); err != nil {
		return PlayRecord{}, fmt.Errorf("licensing: malformed record of play %s: %w", id, err)
	}
	if j.V != formatVersion {
		return PlayRecord{}, fmt.Errorf("licensing: record of play %s has format version %d, not %d", id, j.V, formatVersion)
	}
	if j.Bytes < 0 {
		return PlayRecord{}, fmt.Errorf("licensing: malformed record of play %s: negative bytes", id)
	}
	return PlayRecord{Play: id, Started: j.Started, LastSeen: j.LastSeen, Bytes: j.Bytes}, nil
}

// strictJSON decodes exactly one JSON value of v's type from b, with no
// unknown fields and nothing after it.
func strictJSON(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if _, err := d.Token(); err != io.EOF {
		return errors.New("data after the JSON value")
	}
	return nil
}
