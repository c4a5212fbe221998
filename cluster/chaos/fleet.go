package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"
)

// A fleet is the storm's SDK clients: in this process, or spread over
// child processes, since a process may hold at most 20,000 open files here
// and a full storm has 20,000 clients.
type fleet interface {
	// waitConnected waits until every client has a live socket.
	waitConnected(ctx context.Context) error
	// drop makes the clients at the leaver indices give up, then drops
	// every socket at once (the network dropped them).
	drop(leavers []int) error
	// stats returns each client's counters, in order.
	stats() ([]clientStats, error)
	// leave disconnects every client (1000) and ends the fleet.
	leave()
}

// clientStats is what one client went through.
type clientStats struct {
	Connects    int    `json:"connects"`
	Failures    int    `json:"failures"`
	RateLimited int    `json:"rate_limited"`
	Fatal       string `json:"fatal,omitempty"`
}

// sessions is a fleet in this process.
type sessions []*Session

// startSessions starts a client per user, alternating which gateway each
// tries first (by global index, first being users[0]'s).
func startSessions(ctx context.Context, gateways [2]string, creds Creds, users []string, first int) sessions {
	s := make(sessions, len(users))
	for i, u := range users {
		bal := NewBalancer(gateways[0], gateways[1])
		if (first+i)%2 == 1 {
			bal = NewBalancer(gateways[1], gateways[0])
		}
		s[i] = StartSession(ctx, bal, creds, u)
	}
	return s
}

func (s sessions) each(f func(*Session)) {
	var wg sync.WaitGroup
	for _, x := range s {
		wg.Go(func() { f(x) })
	}
	wg.Wait()
}

func (s sessions) waitConnected(ctx context.Context) error {
	for _, x := range s {
		if err := Within(ctx, 2*time.Minute, x.WaitConnected); err != nil {
			return err
		}
	}
	return nil
}

func (s sessions) drop(leavers []int) error {
	for _, i := range leavers {
		if i < 0 || i >= len(s) {
			return fmt.Errorf("no client %d of %d", i, len(s))
		}
		s[i].GiveUp()
	}
	s.each((*Session).Drop)
	return nil
}

func (s sessions) stats() ([]clientStats, error) {
	out := make([]clientStats, len(s))
	for i, x := range s {
		st := x.Stats()
		out[i] = clientStats{Connects: st.Connects, Failures: st.Failures, RateLimited: st.RateLimited}
		if st.Fatal != nil {
			out[i].Fatal = st.Fatal.Error()
		}
	}
	return out, nil
}

func (s sessions) leave() { s.each((*Session).Leave) }

// StormClientsCommand is the first argument that makes presence-chaos serve
// part of a storm's clients as a child process (ServeStormClients).
const StormClientsCommand = "storm-clients"

// fleetRequest is a command to a child process, one JSON line on its stdin.
type fleetRequest struct {
	Cmd      string    `json:"cmd"` // start, drop, stats, leave
	Gateways [2]string `json:"gateways,omitempty"`
	Creds    Creds     `json:"creds,omitzero"`
	Users    []string  `json:"users,omitempty"`
	First    int       `json:"first,omitempty"`
	Leavers  []int     `json:"leavers,omitempty"`
}

// fleetReply is a child's answer, one JSON line on its stdout.
type fleetReply struct {
	Error string        `json:"error,omitempty"`
	Stats []clientStats `json:"stats,omitempty"`
}

// ServeStormClients runs a child's share of a storm's clients, commanded
// over in and answering on out, until it is told to leave or in ends.
func ServeStormClients(ctx context.Context, in io.Reader, out io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	dec := json.NewDecoder(in)
	enc := json.NewEncoder(out)
	var s sessions
	defer func() { s.leave() }()
	for {
		var req fleetRequest
		if err := dec.Decode(&req); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		var rep fleetReply
		var err error
		switch req.Cmd {
		case "start":
			s = startSessions(ctx, req.Gateways, req.Creds, req.Users, req.First)
			err = s.waitConnected(ctx)
		case "drop":
			err = s.drop(req.Leavers)
		case "stats":
			rep.Stats, err = s.stats()
		case "leave":
			s.leave()
			s = nil
			return enc.Encode(rep)
		default:
			err = fmt.Errorf("unknown command %q", req.Cmd)
		}
		if err != nil {
			rep.Error = err.Error()
		}
		if err := enc.Encode(rep); err != nil {
			return err
		}
	}
}

// children is a fleet spread over child processes of exe.
type children struct {
	procs []*child
}

type child struct {
	cmd   *exec.Cmd
	in    *json.Encoder
	out   *json.Decoder
	stdin io.Closer
	first int // global index of its first client
	n     int
}

// startChildren starts procs children of exe and splits users among them.
func startChildren(ctx context.Context, exe string, procs int, gateways [2]string, creds Creds, users []string) (*children, error) {
	f := &children{}
	per := (len(users) + procs - 1) / procs
	for first := 0; first < len(users); first += per {
		part := users[first:min(first+per, len(users))]
		cmd := exec.CommandContext(ctx, exe, StormClientsCommand)
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			f.kill()
			return nil, err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			f.kill()
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			f.kill()
			return nil, fmt.Errorf("start a storm client process: %w", err)
		}
		c := &child{cmd: cmd, in: json.NewEncoder(stdin), out: json.NewDecoder(bufio.NewReader(stdout)), stdin: stdin, first: first, n: len(part)}
		f.procs = append(f.procs, c)
		if err := c.in.Encode(fleetRequest{Cmd: "start", Gateways: gateways, Creds: creds, Users: part, First: first}); err != nil {
			f.kill()
			return nil, err
		}
	}
	return f, nil
}

// ask sends req to every child at once and collects the replies in order.
func (f *children) ask(req func(c *child) fleetRequest) ([]fleetReply, error) {
	replies := make([]fleetReply, len(f.procs))
	errs := make([]error, len(f.procs))
	var wg sync.WaitGroup
	for i, c := range f.procs {
		wg.Go(func() {
			if r := req(c); r.Cmd != "" {
				if err := c.in.Encode(r); err != nil {
					errs[i] = err
					return
				}
			}
			if err := c.out.Decode(&replies[i]); err != nil {
				errs[i] = fmt.Errorf("storm client process %d: %w", i+1, err)
				return
			}
			if replies[i].Error != "" {
				errs[i] = fmt.Errorf("storm client process %d: %s", i+1, replies[i].Error)
			}
		})
	}
	wg.Wait()
	return replies, errors.Join(errs...)
}

// waitConnected reads each child's answer to its start.
func (f *children) waitConnected(ctx context.Context) error {
	_, err := f.ask(func(*child) fleetRequest { return fleetRequest{} })
	return err
}

func (f *children) drop(leavers []int) error {
	_, err := f.ask(func(c *child) fleetRequest {
		var mine []int
		for _, i := range leavers {
			if i >= c.first && i < c.first+c.n {
				mine = append(mine, i-c.first)
			}
		}
		return fleetRequest{Cmd: "drop", Leavers: mine}
	})
	return err
}

func (f *children) stats() ([]clientStats, error) {
	replies, err := f.ask(func(*child) fleetRequest { return fleetRequest{Cmd: "stats"} })
	if err != nil {
		return nil, err
	}
	var out []clientStats
	for _, r := range replies {
		out = append(out, r.Stats...)
	}
	return out, nil
}

// kill ends the children at once (when starting them failed).
func (f *children) kill() {
	for _, c := range f.procs {
		_ = c.cmd.Process.Kill()
		_ = c.cmd.Wait()
	}
}

func (f *children) leave() {
	_, _ = f.ask(func(*child) fleetRequest { return fleetRequest{Cmd: "leave"} })
	for _, c := range f.procs {
		_ = c.stdin.Close()
		_ = c.cmd.Wait()
	}
}
