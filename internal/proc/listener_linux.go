//go:build linux

package proc

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// VerifyListener checks through /proc that something listens on TCP port
// (IPv4 or IPv6) and that every listening socket on it belongs to process
// pid. Caddy binds with SO_REUSEPORT, so a port taken by a stranger between
// FreePort and the bind is shared, not refused: this is what finds out.
// The errors wrap ErrNoListener or ErrForeignListener, or are those of
// reading /proc.
func VerifyListener(pid, port int) error {
	inodes, err := listeningInodes(port)
	if err != nil {
		return err
	}
	if len(inodes) == 0 {
		return fmt.Errorf("port %d: %w", port, ErrNoListener)
	}
	own, err := socketInodes(pid)
	if err != nil {
		return err
	}
	for ino := range inodes {
		if !own[ino] {
			return fmt.Errorf("port %d: listening socket inode %s is not pid %d's: %w", port, ino, pid, ErrForeignListener)
		}
	}
	return nil
}

// listeningInodes returns the inodes of the sockets in state LISTEN on
// port, from /proc/net/tcp and /proc/net/tcp6.
func listeningInodes(port int) (map[string]bool, error) {
	out := map[string]bool{}
	read := 0
	var lastErr error
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(file)
		if err != nil {
			lastErr = err // tcp6 is missing without IPv6
			continue
		}
		read++
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || fields[3] != "0A" { // 0A: TCP_LISTEN
				continue
			}
			i := strings.LastIndexByte(fields[1], ':')
			p, err := strconv.ParseUint(fields[1][i+1:], 16, 16)
			if err == nil && int(p) == port {
				out[fields[9]] = true
			}
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
	}
	if read == 0 {
		return nil, fmt.Errorf("listening sockets: %w", lastErr)
	}
	return out, nil
}

// socketInodes returns the inodes of the sockets process pid has open.
func socketInodes(pid int) (map[string]bool, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, e := range ents {
		link, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		if s, ok := strings.CutPrefix(link, "socket:["); ok {
			out[strings.TrimSuffix(s, "]")] = true
		}
	}
	return out, nil
}
