//go:build linux

package proc

import (
	"os/exec"
	"syscall"
)

// SetDeathSignal makes cmd's process get SIGKILL when the thread that
// starts it dies (in practice: when this process dies), so no child
// outlives a crashed test or benchmark. Call it before cmd.Start.
func SetDeathSignal(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
