package protocol

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MediaInfo describes one item of the origin's catalog as the server
// announces it inside a sealed catalog response.
type MediaInfo struct {
	// ID names the media in chunk requests: a clean relative path
	// (see ValidMediaID), such as "albums/track01.flac".
	ID string `json:"id"`
	// Title is for people; it defaults to the file name.
	Title string `json:"title"`
	// Size is the plaintext length in bytes.
	Size int64 `json:"size"`
	// ContentType is the media type the player should be told.
	ContentType string `json:"content_type"`
	// Duration in seconds, zero when unknown.
	Duration float64 `json:"duration,omitempty"`
}

// ChunkCount is how many chunks a medium of size bytes has at chunkSize:
// ⌈size/chunkSize⌉, and 1 for an empty medium, whose chunk 0 is empty.
func ChunkCount(size uint64, chunkSize int) uint64 {
	cs := uint64(chunkSize)
	n := size / cs
	if size%cs != 0 || size == 0 {
		n++
	}
	return n
}

// ChunkSpan is the plaintext byte range [start, end) of chunk index of a
// medium of size bytes, and whether that chunk exists (§12). It is the one
// place that knows how media split into chunks; it cannot overflow.
func ChunkSpan(index, size uint64, chunkSize int) (start, end uint64, ok bool) {
	if chunkSize <= 0 || index >= ChunkCount(size, chunkSize) {
		return 0, 0, false
	}
	start = index * uint64(chunkSize)
	return start, start + min(uint64(chunkSize), size-start), true
}

// ValidMediaID accepts clean relative slash-separated paths of valid UTF-8:
// no empty, "." or ".." element, no backslash, no control or format
// character (which includes bidirectional overrides and zero-width
// characters that make two ids look alike), at most 1024 bytes. The server
// maps ids to origin paths, so this is what keeps a request inside the
// media tree.
func ValidMediaID(id string) error {
	if id == "" || len(id) > maxMediaIDLength {
		return fmt.Errorf("%w: length %d", errMediaID, len(id))
	}
	if !utf8.ValidString(id) {
		return fmt.Errorf("%w: %q is not valid UTF-8", errMediaID, id)
	}
	for _, r := range id {
		if r == '\\' || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return fmt.Errorf("%w: %q contains a forbidden character", errMediaID, id)
		}
	}
	for _, elem := range strings.Split(id, "/") {
		if elem == "" || elem == "." || elem == ".." {
			return fmt.Errorf("%w: %q is not a clean relative path", errMediaID, id)
		}
	}
	return nil
}
