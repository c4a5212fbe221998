package chaos

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"
)

// TestBackoff: the SDK's retry interval after the n-th failure is random in
// [max(250, (n−1)·2000), min(500+n·2000, 25000)] ms.
func TestBackoff(t *testing.T) {
	for n := 1; n <= 20; n++ {
		lo := time.Duration(min(max(250, (n-1)*2000), 25000)) * time.Millisecond
		hi := time.Duration(min(500+n*2000, 25000)) * time.Millisecond
		for range 200 {
			if d := Backoff(n); d < lo || d > hi {
				t.Fatalf("Backoff(%d) = %s, want within [%s, %s]", n, d, lo, hi)
			}
		}
	}
}

// TestProxyBlackHole: the proxy forwards both ways until black-holed; then
// nothing passes either way and neither side is closed.
func TestProxyBlackHole(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	serverGot := make(chan string, 10)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				close(serverGot)
				return
			}
			serverGot <- line
			_, _ = c.Write([]byte("echo " + line))
		}
	}()
	p, err := NewProxy(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if _, err := c.Write([]byte("one\n")); err != nil {
		t.Fatal(err)
	}
	if got, err := r.ReadString('\n'); err != nil || got != "echo one\n" {
		t.Fatalf("through the proxy: %q, %v", got, err)
	}
	<-serverGot
	p.BlackHole()
	if _, err := c.Write([]byte("two\n")); err != nil {
		t.Fatalf("write into the black hole: %v", err)
	}
	// Nothing arrives either way, and the client's socket stays open: a
	// read times out rather than ending.
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if got, err := r.ReadString('\n'); err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("read after the black hole: %q, %v; want a timeout", got, err)
	}
	select {
	case line, ok := <-serverGot:
		if ok {
			t.Fatalf("the server got %q through the black hole", line)
		}
		t.Fatal("the server's socket was closed by the black hole")
	default:
	}
}

func TestQuantileAndTable(t *testing.T) {
	ds := []time.Duration{5 * time.Second, time.Second, 3 * time.Second, 2 * time.Second, 4 * time.Second}
	if q := Quantile(ds, 0.5); q != 3*time.Second {
		t.Errorf("p50 = %s", q)
	}
	if q := Quantile(ds, 1); q != 5*time.Second {
		t.Errorf("max = %s", q)
	}
	if s := P50Max(nil); s != "no samples" {
		t.Errorf("P50Max(nil) = %q", s)
	}
	r := &Result{Scenario: "x", Setup: "a|b", Measured: "m", Expected: "e"}
	r.Violate("broke %d", 1)
	r.Find("example-bug", "bug")
	tab := Table([]*Result{r})
	for _, want := range []string{"| x | a\\|b | m | e | **1 violation(s)**; bug: example-bug |", "- x: violation: broke 1", "- x: bug (example-bug): bug"} {
		if !strings.Contains(tab, want) {
			t.Errorf("table lacks %q:\n%s", want, tab)
		}
	}
}

func TestAlternating(t *testing.T) {
	if got := Format(seenOf(Alternating(true, 3))); got != "on off on" {
		t.Errorf("Alternating(true, 3) = %s", got)
	}
}

func seenOf(b []bool) []Seen {
	out := make([]Seen, len(b))
	for i, o := range b {
		out[i] = Seen{Online: o}
	}
	return out
}
