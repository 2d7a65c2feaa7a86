//go:build !linux

package proc

import (
	"errors"
	"fmt"
)

// VerifyListener needs /proc: outside Linux it reports
// errors.ErrUnsupported.
func VerifyListener(pid, port int) error {
	return fmt.Errorf("checking who listens on port %d: %w", port, errors.ErrUnsupported)
}
