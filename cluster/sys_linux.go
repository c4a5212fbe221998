package cluster

import "syscall"

// sysProcAttr puts a node in its own process group, so a Ctrl-C at the
// terminal reaches only the runner, which stops the nodes in order; and has
// the kernel send it SIGTERM should the runner die without stopping it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
