//go:build !linux

package proc

import "os/exec"

// SetDeathSignal does nothing here: there is no Pdeathsig outside Linux.
func SetDeathSignal(cmd *exec.Cmd) {}
