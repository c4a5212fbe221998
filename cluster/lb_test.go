package cluster

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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
