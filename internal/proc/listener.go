package proc

import "errors"

var (
	// ErrNoListener: nothing listens on the port.
	ErrNoListener = errors.New("nothing listens on the port")
	// ErrForeignListener: a socket listening on the port belongs to
	// another process (with SO_REUSEPORT, a port can be shared).
	ErrForeignListener = errors.New("the port is shared with another process")
)
