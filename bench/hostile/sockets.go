package hostile

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/presencehq/presence/pkg/token"
)

// Deaf completes a WebSocket handshake and the connect as name on a raw
// socket, has the connection watch watched through REST, and then never
// reads again until ctx ends: every change of a watched user is queued for
// a socket whose receive buffer only fills. The server must keep serving
// everyone else (and may close it as too slow). It holds its one socket:
// never reading, it cannot tell whether the server closed it.
func Deaf(ctx context.Context, t Target, name string, watched []string) Outcome {
	o := newOutcome(KindDeaf, name)
	c, connID, err := t.rawConnect(ctx, name)
	if err != nil {
		o.fail(ctx, err)
		return o
	}
	defer c.Close()
	o.Sockets++
	if len(watched) > 0 {
		o.Sent++
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		o.fail(ctx, t.rest().WatchUsers(wctx, name, connID, watched))
		cancel()
	}
	<-ctx.Done()
	return o
}

// rawConnect is the SDK's connect as user, by hand on a raw TCP socket: the
// handshake and the first frame (connection.ok) read, nothing more, so the
// caller decides when, if ever, the socket is read again. It returns the
// socket and the connection id.
func (t Target) rawConnect(ctx context.Context, user string) (net.Conn, string, error) {
	u, err := url.Parse(t.WSURL)
	if err != nil {
		return nil, "", err
	}
	tok, err := token.ForUser(t.Secret, user)
	if err != nil {
		return nil, "", err
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil, "", err
	}
	fail := func(err error) (net.Conn, string, error) {
		c.Close()
		return nil, "", fmt.Errorf("connect %s: %w", user, err)
	}
	req := "GET " + u.Path + "?" + t.connectQuery(user, tok) + " HTTP/1.1\r\nHost: " + u.Host + "\r\n" +
		"Upgrade: websocket\r\nConnection: Upgrade\r\nX-Forwarded-For: " + Source(user) + "\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		return fail(err)
	}
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		return fail(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return fail(fmt.Errorf("handshake answered %s", resp.Status))
	}
	body, err := readServerFrame(r)
	if err != nil {
		return fail(fmt.Errorf("connection.ok: %w", err))
	}
	var ok struct {
		ConnectionID string `json:"connection_id"`
	}
	if json.Unmarshal(body, &ok) != nil || ok.ConnectionID == "" {
		return fail(fmt.Errorf("first frame %.200s, want connection.ok", body))
	}
	_ = c.SetDeadline(time.Time{})
	return c, ok.ConnectionID, nil
}

// readServerFrame reads one frame the server sent (unmasked, unfragmented)
// and returns its payload.
func readServerFrame(r io.Reader) ([]byte, error) {
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:2]); err != nil {
		return nil, err
	}
	n := uint64(hdr[1] & 0x7f)
	switch n {
	case 126:
		if _, err := io.ReadFull(r, hdr[:2]); err != nil {
			return nil, err
		}
		n = uint64(binary.BigEndian.Uint16(hdr[:2]))
	case 127:
		if _, err := io.ReadFull(r, hdr[:8]); err != nil {
			return nil, err
		}
		n = binary.BigEndian.Uint64(hdr[:8])
	}
	if n > 1<<20 {
		return nil, fmt.Errorf("a frame of %d bytes", n)
	}
	body := make([]byte, n)
	_, err := io.ReadFull(r, body)
	return body, err
}

// Stall opens a TCP connection to the connect endpoint and sends half a
// request head, never the rest. The server must drop it (its
// ReadHeaderTimeout) without it costing anyone else; dropped, it stalls
// again on a new connection. name only labels it: a head cut short names
// no one.
func Stall(ctx context.Context, t Target, name string) Outcome {
	o := newOutcome(KindStall, name)
	u, err := url.Parse(t.WSURL)
	if err != nil {
		o.fail(ctx, err)
		return o
	}
	for {
		var d net.Dialer
		if c, err := d.DialContext(ctx, "tcp", u.Host); err != nil {
			o.fail(ctx, err)
		} else {
			o.Sockets++
			if _, err := io.WriteString(c, "GET "+u.Path+"?api_key="+t.Key+" HTTP/1.1\r\nHost: "+u.Host+"\r\nUpgrade: websock"); err == nil {
				o.Sent++
			}
			// Whatever the server answers (if anything) is read and dropped
			// until it hangs up, or the attack ends and closes the socket.
			stop := context.AfterFunc(ctx, func() { c.Close() })
			_, _ = io.Copy(io.Discard, c)
			stop()
			c.Close()
			o.closed(ctx, NoCloseFrame)
		}
		if !pause(ctx, comeBack) {
			return o
		}
	}
}
