package protocol

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
