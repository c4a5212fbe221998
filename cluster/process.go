package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// process is one running (or exited) node.
type process struct {
	node Node
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, once done

	mu       sync.Mutex
	stopping bool // the exit was asked for: not reported as a crash
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig to the process's group (nginx's workers, too).
func (p *process) signal(sig syscall.Signal) error {
	if p.exited() {
		return nil
	}
	err := syscall.Kill(-p.cmd.Process.Pid, sig)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// stop sends sig and waits for the exit; after timeout it kills the group.
func (p *process) stop(sig syscall.Signal, timeout time.Duration) error {
	p.mu.Lock()
	p.stopping = true
	p.mu.Unlock()
	if err := p.signal(sig); err != nil {
		return fmt.Errorf("cluster: signal %s: %w", p.node.Name, err)
	}
	if sig == syscall.SIGKILL {
		<-p.done
		return nil
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(timeout):
	}
	_ = p.signal(syscall.SIGKILL)
	<-p.done
	return fmt.Errorf("cluster: %s did not stop within %s after %s; killed", p.node.Name, timeout, sig)
}

// spawn starts node's program with args and env (added to this process's
// environment), its output prefixed in out, its pid in pidFile.
func spawn(node Node, path string, args []string, env map[string]string, out *output, pidFile string, onExit func(*process)) (*process, error) {
	cmd := exec.Command(path, args...)
	cmd.Env = os.Environ() // later entries win: the node's own settings
	for _, k := range sortedKeys(env) {
		cmd.Env = append(cmd.Env, k+"="+env[k])
	}
	w := out.writer(node.Name)
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = sysProcAttr()
	// Output copying must not outlive the process by much, even when a
	// child of it still holds the pipe.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("cluster: start %s: %w", node.Name, err)
	}
	p := &process{node: node, cmd: cmd, done: make(chan struct{})}
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		_ = p.signal(syscall.SIGKILL)
		_ = cmd.Wait()
		return nil, fmt.Errorf("cluster: pid file: %w", err)
	}
	go func() {
		p.err = cmd.Wait()
		w.flush()
		// Remove the pid file unless a restart already wrote a new one.
		if b, err := os.ReadFile(pidFile); err == nil && string(bytes.TrimSpace(b)) == strconv.Itoa(cmd.Process.Pid) {
			_ = os.Remove(pidFile)
		}
		close(p.done)
		onExit(p)
	}()
	return p, nil
}

// output interleaves the lines of every process on one writer, each line
// prefixed with the name of the node that wrote it.
type output struct {
	mu    sync.Mutex
	w     io.Writer
	width int
}

func newOutput(w io.Writer, names []string) *output {
	width := len("cluster")
	for _, n := range names {
		width = max(width, len(n))
	}
	return &output{w: w, width: width}
}

func (o *output) line(name string, text []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	fmt.Fprintf(o.w, "%-*s | %s\n", o.width, name, text)
}

// Printf writes one line of the runner's own.
func (o *output) Printf(format string, args ...any) {
	o.line("cluster", fmt.Appendf(nil, format, args...))
}

func (o *output) writer(name string) *lineWriter { return &lineWriter{o: o, name: name} }

// lineWriter buffers a process's output until a whole line is there.
type lineWriter struct {
	o    *output
	name string
	mu   sync.Mutex
	buf  []byte
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.o.line(l.name, bytes.TrimRight(l.buf[:i], "\r"))
		l.buf = l.buf[i+1:]
	}
	if len(l.buf) > 64<<10 { // a runaway line without a newline
		l.o.line(l.name, l.buf)
		l.buf = nil
	}
	return len(p), nil
}

func (l *lineWriter) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.o.line(l.name, l.buf)
		l.buf = nil
	}
}

func pidFile(dataDir, name string) string { return filepath.Join(dataDir, name+".pid") }
