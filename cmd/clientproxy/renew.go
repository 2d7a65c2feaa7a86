package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/caddy-drm/caddy-drm/protocol"
)

// askOnTerminal returns the question --renew ask puts when a license is
// used up: a y/n prompt on clientproxy's terminal (/dev/tty, so it works
// with stdin redirected), as the design this descends from had; the
// player waits for the answer. Without a terminal the answer is no, and
// the log says why.
func askOnTerminal(logger *slog.Logger) func(context.Context, protocol.PaymentRequired) bool {
	var mu sync.Mutex // one question at a time
	return func(ctx context.Context, offer protocol.PaymentRequired) bool {
		mu.Lock()
		defer mu.Unlock()
		tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
		if err != nil {
			logger.Warn("license used up and no terminal to ask on (--renew ask); not renewed", "media", offer.Media, "err", err)
			return false
		}
		defer tty.Close()
		stop := context.AfterFunc(ctx, func() { tty.Close() }) // the reader gave up
		defer stop()
		return ask(tty, tty, offer)
	}
}

// ask puts the renewal question on w and reads the answer from r: yes
// only for an explicit y or yes.
func ask(r io.Reader, w io.Writer, offer protocol.PaymentRequired) bool {
	// What the server says is quoted, control characters and all
	// escaped: it must not drive the terminal.
	fmt.Fprintf(w, "\nThe license of %q is used up (%s).\nRenew it? [y/N] ", offer.Media, strings.Trim(strconv.Quote(offer.Reason), `"`))
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && line == "" {
		return false
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true
	}
	return false
}
