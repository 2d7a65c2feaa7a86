package proc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Attempt is one try of StartServer.
type Attempt struct {
	N     int    // 1, 2, ...
	Ports []int  // ServerSpec.Ports distinct free loopback ports
	Dir   string // a fresh directory: the output files, and whatever Args writes
}

// ServerSpec describes a server for StartServer.
type ServerSpec struct {
	Name      string   // in file names and messages; default: the base name of Path
	Path      string   // the executable
	Env       []string // as Spec.Env
	KillAfter time.Duration
	// Dir is where each attempt gets a directory of its own. Required.
	Dir string
	// Ports is how many free loopback ports an attempt gets (default 1).
	// The process must listen on every one of them, and nobody else may.
	Ports int
	// Args returns the arguments for an attempt (it may write files into
	// a.Dir). An error ends StartServer without retrying.
	Args func(a Attempt) ([]string, error)
	// ReadyURL is polled until it answers; default
	// http://127.0.0.1:PORT/ for the first port.
	ReadyURL     func(a Attempt) string
	ReadyTimeout time.Duration // default 20 s
	// Check, optional, runs once ReadyURL answered, before the listener
	// check; an error fails the attempt.
	Check func(s *Server) error
	// Describe, optional, adds text to a failed attempt's error (such as
	// the rendered configuration).
	Describe func(a Attempt) string
	Attempts int                           // default 3
	Logf     func(format string, a ...any) // told about each failed attempt; optional
}

// Server is a process started by StartServer, with the ports it was
// checked on.
type Server struct {
	*Process
	Attempt
}

// StartServer starts a server that belongs to no group.
func StartServer(s ServerSpec) (*Server, error) { return (*Group)(nil).StartServer(s) }

// StartServer starts s.Path on free loopback ports and checks that it, and
// only it, serves them: its ReadyURL answers before ReadyTimeout (giving up
// when the process exits), s.Check passes, and through /proc every socket
// listening on each port is the process's own (VerifyListener). A failed
// attempt is stopped and retried on new ports, up to s.Attempts times.
func (g *Group) StartServer(s ServerSpec) (*Server, error) {
	if s.Dir == "" || s.Args == nil {
		return nil, errors.New("proc: ServerSpec needs Dir and Args")
	}
	if s.Name == "" {
		s.Name = filepath.Base(s.Path)
	}
	if s.Ports <= 0 {
		s.Ports = 1
	}
	if s.Attempts <= 0 {
		s.Attempts = 3
	}
	if s.ReadyTimeout <= 0 {
		s.ReadyTimeout = 20 * time.Second
	}
	var lastErr error
	for n := 1; n <= s.Attempts; n++ {
		srv, err := g.tryServer(s, n)
		if err == nil {
			return srv, nil
		}
		var fatal fatalError
		if errors.As(err, &fatal) {
			return nil, fatal.err
		}
		lastErr = err
		if s.Logf != nil {
			s.Logf("%s: attempt %d of %d failed: %v", s.Name, n, s.Attempts, err)
		}
	}
	return nil, fmt.Errorf("%s: no good start in %d attempts, the last: %w", s.Name, s.Attempts, lastErr)
}

// fatalError is a failure that another attempt would repeat.
type fatalError struct{ err error }

func (e fatalError) Error() string { return e.err.Error() }

func (g *Group) tryServer(s ServerSpec, n int) (*Server, error) {
	dir, err := os.MkdirTemp(s.Dir, fmt.Sprintf("%s-%d-", s.Name, n))
	if err != nil {
		return nil, fatalError{err}
	}
	ports, err := FreePorts(s.Ports)
	if err != nil {
		return nil, fatalError{err}
	}
	a := Attempt{N: n, Ports: ports, Dir: dir}
	args, err := s.Args(a)
	if err != nil {
		return nil, fatalError{fmt.Errorf("%s: %w", s.Name, err)}
	}
	p, err := g.Start(Spec{Name: s.Name, Path: s.Path, Args: args, Env: s.Env, LogDir: dir, KillAfter: s.KillAfter})
	if err != nil {
		return nil, fatalError{err}
	}
	srv := &Server{Process: p, Attempt: a}
	err = srv.check(s)
	if err == nil {
		return srv, nil
	}
	p.Stop()
	msg := ""
	if s.Describe != nil {
		msg = "\n" + s.Describe(a)
	}
	return nil, fmt.Errorf("%w%s\n%s (pid %d) output:\n%s", err, msg, s.Name, p.Pid(), p.Tail(15))
}

func (srv *Server) check(s ServerSpec) error {
	url := fmt.Sprintf("http://127.0.0.1:%d/", srv.Ports[0])
	if s.ReadyURL != nil {
		url = s.ReadyURL(srv.Attempt)
	}
	if err := srv.WaitHTTP(url, s.ReadyTimeout); err != nil {
		return err
	}
	if s.Check != nil {
		if err := s.Check(srv); err != nil {
			return err
		}
	}
	for _, port := range srv.Ports {
		if err := VerifyListener(srv.Pid(), port); err != nil {
			return err
		}
	}
	return nil
}
