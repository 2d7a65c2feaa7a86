package clientproxy

import (
	"bytes"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/caddy-drm/caddy-drm/protocol"
)

// mediaPath is the server path of a medium. Each segment is escaped on its
// own so that ids keep their slashes as path separators (ServeMux's
// {id...} collects them back) while spaces, '%', '?', '#' and the like
// cannot change the meaning of the URL.
func mediaPath(id string) string {
	segs := strings.Split(id, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return "/media/" + strings.Join(segs, "/")
}

// indexTemplate is parsed once; html/template escapes titles and other
// origin-supplied strings, which are not trusted to be markup.
var indexTemplate = template.Must(template.New("index").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>caddy-drm media</title>
</head>
<body>
<h1>Media</h1>
<p><a href="/playlist.m3u">Playlist (M3U)</a></p>
<ul>
{{- range .}}
<li>
<h2>{{.Title}}</h2>
<p>{{.Size}}{{with .Duration}} &middot; {{.}}{{end}} &middot; {{.ContentType}}</p>
<audio controls preload="none" src="{{.Path}}"></audio>
</li>
{{- else}}
<li>No media.</li>
{{- end}}
</ul>
</body>
</html>
`))

// indexEntry is one medium as the catalog page shows it.
type indexEntry struct {
	Title       string
	Size        string
	Duration    string
	ContentType string
	Path        string
}

func (s *Server) serveIndex(w http.ResponseWriter, r *http.Request) {
	items, err := s.catalog.list(r.Context())
	if err != nil {
		s.logger.Error("catalog page failed", "err", err)
		http.Error(w, "Bad Gateway: "+err.Error(), http.StatusBadGateway)
		return
	}
	entries := make([]indexEntry, len(items))
	for i, it := range items {
		entries[i] = indexEntry{
			Title:       displayTitle(it),
			Size:        formatSize(it.Size),
			ContentType: it.ContentType,
			Path:        mediaPath(it.ID),
		}
		if it.Duration > 0 {
			entries[i].Duration = formatDuration(it.Duration)
		}
	}
	// Render to a buffer first so a template error is a clean 500, not
	// half a page.
	var buf bytes.Buffer
	if err := indexTemplate.Execute(&buf, entries); err != nil {
		s.logger.Error("render catalog page", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.Write(buf.Bytes())
}

// servePlaylist writes an extended M3U that players can open directly.
// URLs are absolute because players resolve playlist entries against the
// playlist's location inconsistently (some not at all).
func (s *Server) servePlaylist(w http.ResponseWriter, r *http.Request) {
	items, err := s.catalog.list(r.Context())
	if err != nil {
		s.logger.Error("playlist failed", "err", err)
		http.Error(w, "Bad Gateway: "+err.Error(), http.StatusBadGateway)
		return
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	var b strings.Builder
	b.WriteString("#EXTM3U\n")
	for _, it := range items {
		secs := int64(-1)
		if it.Duration > 0 {
			secs = int64(math.Ceil(it.Duration))
		}
		// A line break in a title would start a new playlist line.
		title := strings.Join(strings.Fields(displayTitle(it)), " ")
		fmt.Fprintf(&b, "#EXTINF:%d,%s\n%s://%s%s\n", secs, title, scheme, r.Host, mediaPath(it.ID))
	}
	w.Header().Set("Content-Type", "audio/x-mpegurl")
	w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	w.Write([]byte(b.String()))
}

// displayTitle falls back to the id, so that no entry is blank.
func displayTitle(it protocol.MediaInfo) string {
	if strings.TrimSpace(it.Title) != "" {
		return it.Title
	}
	return it.ID
}

// formatSize renders a byte count for people, keeping the exact count.
func formatSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB (%d bytes)", float64(n)/float64(div), "KMGTPE"[exp], n)
}

// formatDuration renders seconds as h:mm:ss or m:ss.
func formatDuration(secs float64) string {
	d := time.Duration(math.Round(secs)) * time.Second
	h, m, sec := int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60
	if h > 0 {
		return fmt.Sprintf("%d:%02d:%02d", h, m, sec)
	}
	return fmt.Sprintf("%d:%02d", m, sec)
}
