package cluster

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestNginxConfig renders the load balancer's configuration as make cluster
// does and, when nginx is installed, has nginx check it.
func TestNginxConfig(t *testing.T) {
	top := Default()
	for _, n := range []Net{Loopback, Compose} {
		env, err := top.Env("lb", n)
		if err != nil {
			t.Fatal(err)
		}
		tmpl, err := os.ReadFile("../deploy/nginx/presence.conf.template")
		if err != nil {
			t.Fatal(err)
		}
		conf, err := RenderTemplate(string(tmpl), env)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"listen " + env["LB_HTTP_LISTEN"] + ";", "listen " + env["LB_WS_LISTEN"] + ";", env["LB_API_SERVERS"], env["LB_GATEWAY_SERVERS"], "$http_upgrade"} {
			if !strings.Contains(conf, want) {
				t.Errorf("rendered configuration lacks %q", want)
			}
		}
		// Each public port hides the nodes' metrics.
		if servers, hidden := strings.Count(conf, "\nserver {"), strings.Count(conf, "location ^~ /metrics {\n        return 404;"); servers != 2 || hidden != servers {
			t.Errorf("%d of %d server blocks hide /metrics", hidden, servers)
		}
	}
	if _, err := RenderTemplate("listen ${LB_NOPE};", map[string]string{}); err == nil {
		t.Error("a variable without a value rendered")
	}

	nginx, err := FindNginx("")
	if err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	env, _ := top.Env("lb", Loopback)
	main, err := writeNginxConfig(dir, "../deploy/nginx/presence.conf.template", env)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(nginx, "-t", "-e", "stderr", "-p", dir, "-c", main).CombinedOutput()
	if err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "presence.conf")); err != nil {
		t.Fatal(err)
	}
}

// TestLoadBalancer runs the whole topology with nginx (when installed) and
// goes through it as the SDK does: REST and /connect on the HTTP port,
// /connect on the WebSocket port, and connects still succeed with a gateway
// killed.
func TestLoadBalancer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster of processes")
	}
	if _, err := FindNginx(""); err != nil {
		t.Skip(err)
	}
	top, err := Default().WithFreePorts()
	if err != nil {
		t.Fatal(err)
	}
	c := startForTest(t, top, nil)
	lb, _ := top.Node("lb")
	httpConnect := strings.Replace(c.URL("lb"), "http://", "ws://", 1) + "/connect"
	ids := map[string]bool{}
	for i, u := range []string{"lb-a", "lb-b", "lb-c", "lb-d"} {
		url := c.ConnectURL("lb")
		if i%2 == 1 {
			url = httpConnect
		}
		id := connect(t, url, u)
		ids[strings.Split(id, "~")[0]] = true
	}
	if len(ids) != 2 {
		t.Errorf("4 sockets through nginx reached gateways %v, want both", ids)
	}
	waitFor(t, 10*time.Second, "users online through the load balancer's REST", func() bool {
		m := online(t, c.URL("lb"), "lb-a", "lb-b", "lb-c", "lb-d")
		return m["lb-a"] && m["lb-b"] && m["lb-c"] && m["lb-d"]
	})
	if err := c.Kill("gateway-1"); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"lb-e", "lb-f"} {
		if id := connect(t, c.ConnectURL("lb"), u); !strings.HasPrefix(id, "gateway-2~") {
			t.Errorf("with gateway-1 dead, %s connected as %s", u, id)
		}
	}
	if err := readyz("http://127.0.0.1:" + strconv.Itoa(lb.WSPort)); err != nil {
		t.Errorf("load balancer /readyz with one gateway left: %v", err)
	}
}

// TestLoadBalancerHidesMetrics runs nginx (when installed) in front of an
// upstream that answers every path, and asks both public ports for the
// nodes' /metrics in the spellings nginx normalises: none gets through,
// while /readyz still does.
func TestLoadBalancerHidesMetrics(t *testing.T) {
	nginx, err := FindNginx("")
	if err != nil {
		t.Skip(err)
	}
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "upstream %s\n", r.URL.Path)
	}))
	defer upstream.Close()
	top, err := Default().WithFreePorts()
	if err != nil {
		t.Fatal(err)
	}
	env, err := top.Env("lb", Loopback)
	if err != nil {
		t.Fatal(err)
	}
	servers := "server " + upstream.Listener.Addr().String() + ";"
	env["LB_API_SERVERS"], env["LB_GATEWAY_SERVERS"] = servers, servers
	dir := t.TempDir()
	main, err := writeNginxConfig(dir, "../deploy/nginx/presence.conf.template", env)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(nginx, "-e", "stderr", "-p", dir, "-c", main)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM) // fast shutdown, workers included
		<-exited
		if t.Failed() {
			t.Logf("nginx:\n%s", stderr.String())
		}
	})

	for _, addr := range []string{env["LB_HTTP_LISTEN"], env["LB_WS_LISTEN"]} {
		waitFor(t, 10*time.Second, "nginx listening on "+addr, func() bool {
			select {
			case err := <-exited:
				t.Fatalf("nginx exited: %v\n%s", err, stderr.String())
			default:
			}
			code, _, err := rawGet(addr, "/readyz")
			return err == nil && code == http.StatusOK
		})
		for _, path := range []string{"/metrics", "/metrics/", "/metrics?name[]=go_goroutines", "//metrics", "/%6Detrics", "/./metrics", "/x/../metrics"} {
			code, body, err := rawGet(addr, path)
			if err != nil {
				t.Fatalf("GET %s%s: %v", addr, path, err)
			}
			if code != http.StatusNotFound || strings.Contains(body, "upstream") {
				t.Errorf("GET %s%s: %d %q, want 404 from nginx itself", addr, path, code, body)
			}
		}
		if code, body, err := rawGet(addr, "/readyz"); err != nil || code != http.StatusOK || !strings.Contains(body, "upstream /readyz") {
			t.Errorf("GET %s/readyz: %d %q %v, want the upstream's answer", addr, code, body, err)
		}
	}
}

// rawGet sends path exactly as given (net/http's client would clean some
// of the spellings under test).
func rawGet(addr, path string) (int, string, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return 0, "", err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return 0, "", err
	}
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: presence\r\nConnection: close\r\n\r\n", path); err != nil {
		return 0, "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}
