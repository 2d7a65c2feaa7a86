package sealing

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress reports a run: a bar (bytes read of all media) when w is a
// terminal, a line per medium sealed otherwise, nothing when w is nil.
type progress struct {
	w   io.Writer
	bar *progressbar.ProgressBar
	mu  sync.Mutex
}

func newProgress(w io.Writer, total int64) *progress {
	p := &progress{w: w}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.bar = progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription("sealing"),
			progressbar.OptionShowBytes(true),
			progressbar.OptionShowTotalBytes(true),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionClearOnFinish(),
		)
	}
	return p
}

func (p *progress) add(n int64) {
	if p.bar != nil && n > 0 {
		p.bar.Add64(n)
	}
}

// done reports one medium.
func (p *progress) done(what, rel string, size int64) {
	if p.w == nil || p.bar != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if size > 0 {
		fmt.Fprintf(p.w, "%s %s (%s)\n", what, rel, humanize.IBytes(uint64(size)))
	} else {
		fmt.Fprintf(p.w, "%s %s\n", what, rel)
	}
}

func (p *progress) finish() {
	if p.bar != nil {
		p.bar.Finish()
	}
}
