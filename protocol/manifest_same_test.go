package protocol

import "testing"

// TestManifestSameMedium: the same bytes under the same id and block size
// are the same medium whatever the content type; a changed byte, id or
// block size is not.
func TestManifestSameMedium(t *testing.T) {
	data := medium(20000)
	m := mustBuild(t, data, "a.flac", 4096)
	o := mustBuild(t, data, "a.flac", 4096)
	o.ContentType, o.Duration = "audio/ogg", 1
	if !m.SameMedium(o) {
		t.Fatal("the same bytes differ")
	}
	changed := append([]byte(nil), data...)
	changed[19999] ^= 1
	for name, x := range map[string]*Manifest{
		"a changed byte":   mustBuild(t, changed, "a.flac", 4096),
		"another id":       mustBuild(t, data, "b.flac", 4096),
		"other blocks":     mustBuild(t, data, "a.flac", 8192),
		"a shorter medium": mustBuild(t, data[:16384], "a.flac", 4096),
	} {
		if m.SameMedium(x) || x.SameMedium(m) {
			t.Errorf("%s: the same medium", name)
		}
	}
}
