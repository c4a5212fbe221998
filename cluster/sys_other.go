//go:build unix && !linux

package cluster

import "syscall"

// sysProcAttr puts a node in its own process group, so a Ctrl-C at the
// terminal reaches only the runner, which stops the nodes in order.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
