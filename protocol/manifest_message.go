package protocol

import "fmt"

// The manifest request (type 7, §22): the client asks for the signed
// manifest of a medium, the server answers with the signed manifest file,
// sealed; the reply's associated data names the medium, as a chunk's and
// a renewal's do.

// NewManifestRequest seals a request for the signed manifest of media id.
func (s *ClientSession) NewManifestRequest(id string) *Request {
	r := s.newRequest(MsgManifest, []byte(id))
	r.chunk.MediaID = id
	return r
}

// OpenManifest opens the reply to a manifest request and returns the
// signed manifest file it carries. It does not verify it: the caller
// passes it to the package's OpenManifest with its publisher policy, and
// checks that the manifest is of the medium it asked for.
func (r *Request) OpenManifest(reply []byte) ([]byte, error) {
	if r.header.Type != MsgManifest {
		return nil, fmt.Errorf("%w: %s request has no manifest", ErrUnexpectedReply, r.header.Type)
	}
	_, out, err := r.open(nil, reply, r.chunk.MediaID)
	if err != nil {
		return nil, err
	}
	if len(out) > maxSignedManifestSize {
		return nil, fmt.Errorf("%w: a signed manifest of %d bytes", ErrManifest, len(out))
	}
	return out, nil
}

// SealManifest answers an accepted manifest request with the medium's
// signed manifest file, as the origin holds it (the server does not
// verify it: the client does). The reply counts against the epoch's
// bytes.
func (s *ServerSession) SealManifest(a *Accepted, signed []byte) ([]byte, error) {
	if len(signed) == 0 || len(signed) > maxSignedManifestSize {
		return nil, fmt.Errorf("%w: a signed manifest of %d bytes (1 … %d)", ErrNoManifest, len(signed), maxSignedManifestSize)
	}
	if err := a.answer(MsgManifest); err != nil {
		return nil, err
	}
	rh := replyHeader{Type: MsgManifest, Epoch: a.header.Epoch, Seq: a.header.Seq}
	s.count(a.keys, len(signed))
	return s.seal(nil, a.keys, &rh, a.chunk.MediaID, signed), nil
}
