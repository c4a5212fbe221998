package cluster

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/presencehq/presence/api"
	"github.com/presencehq/presence/gateway"
	"github.com/presencehq/presence/pkg/config"
	"github.com/presencehq/presence/pkg/natsauth"
	worker "github.com/presencehq/presence/presence-worker"
)

// The docker-compose.yml fields this test reads (merge keys resolved by the
// YAML decoder).
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	Build       any               `yaml:"build"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
	StopGracePeriod string   `yaml:"stop_grace_period"`
	Profiles        []string `yaml:"profiles"`
}

func readCompose(t *testing.T) composeFile {
	t.Helper()
	b, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var f composeFile
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return f
}

// flagsOf is the flag set each service binary parses its configuration
// with (and, through pkg/config, its PRESENCE_* environment).
func flagsOf(k Kind) *flag.FlagSet {
	fs := flag.NewFlagSet(string(k), flag.ContinueOnError)
	switch k {
	case Gateway:
		new(gateway.Config).RegisterFlags(fs)
	case Worker:
		new(worker.Config).RegisterFlags(fs)
	case API:
		new(api.Config).RegisterFlags(fs)
	default:
		return nil
	}
	return fs
}

// checkServiceEnv reports PRESENCE_* variables and flags that the binary of
// kind k does not read.
func checkServiceEnv(k Kind, env map[string]string, args []string) []string {
	fs := flagsOf(k)
	if fs == nil {
		return nil
	}
	known := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) { known[config.EnvName(f.Name)] = true })
	var bad []string
	for key := range env {
		if strings.HasPrefix(key, "PRESENCE_") && !known[key] {
			bad = append(bad, fmt.Sprintf("%s is not a setting of %s", key, k.Binary()))
		}
	}
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if fs.Lookup(name) == nil {
			bad = append(bad, fmt.Sprintf("flag %s is not a flag of %s", a, k.Binary()))
		}
	}
	slices.Sort(bad)
	return bad
}

// kindOf tells what a compose service runs: its command's program, or nginx.
func kindOf(s composeService) Kind {
	if strings.HasPrefix(s.Image, "nginx:") {
		return LB
	}
	if len(s.Command) > 0 {
		for _, k := range kinds {
			if k.Binary() != "" && filepath.Base(s.Command[0]) == k.Binary() {
				return k
			}
		}
	}
	return ""
}

// TestComposeMatchesTopology keeps docker-compose.yml and make cluster one
// topology: the same nodes, each with the environment the topology gives
// it (every PRESENCE_* variable and flag one its binary reads), the same
// health check, ports, start order and shared configuration files.
func TestComposeMatchesTopology(t *testing.T) {
	f := readCompose(t)
	top := Default()
	if err := top.Check(); err != nil {
		t.Fatal(err)
	}
	if top.Replicas != 3 || len(top.Of(NATS)) != 3 {
		t.Fatalf("default topology: %d replicas on %d NATS nodes, want 3 on 3", top.Replicas, len(top.Of(NATS)))
	}

	var names []string
	for name, s := range f.Services {
		if len(s.Profiles) == 0 { // the monitoring profile: TestComposeMonitoringProfile
			names = append(names, name)
		}
	}
	slices.Sort(names)
	var want []string
	for _, n := range top.Nodes {
		want = append(want, n.Name)
	}
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Fatalf("compose services %v, make cluster runs %v", names, want)
	}

	interp := regexp.MustCompile(`^\$\{([A-Z0-9_]+)(:?-[^}]*)?\}$`)
	for _, node := range top.Nodes {
		s := f.Services[node.Name]
		t.Run(node.Name, func(t *testing.T) {
			if k := kindOf(s); k != node.Kind {
				t.Fatalf("runs %q (command %v, image %s), want a %s node", k, s.Command, s.Image, node.Kind)
			}
			// The environment: exactly the topology's values, plus settings
			// the binary reads.
			topEnv, err := top.Env(node.Name, Compose)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range topEnv {
				if got, ok := s.Environment[k]; !ok || got != v {
					t.Errorf("environment %s = %q, the topology says %q", k, got, v)
				}
			}
			for k, v := range s.Environment {
				if _, ok := topEnv[k]; ok {
					continue
				}
				switch {
				case strings.HasPrefix(k, "PRESENCE_"):
					// checked against the binary below; a value taken
					// from the user's environment uses the same name.
					// A service's NATS password is its role's, as the
					// NATS nodes know it.
					want := k
					if k == "PRESENCE_NATS_PASSWORD" {
						want = RoleOf(node.Kind).PasswordVar()
					}
					if m := interp.FindStringSubmatch(v); m != nil && m[1] != want {
						t.Errorf("environment %s comes from ${%s}, want ${%s}", k, m[1], want)
					}
				case node.Kind == NATS && k == "NATS_STORE_DIR":
				case node.Kind == LB && k == "NGINX_ENVSUBST_FILTER":
					if !regexp.MustCompile(v).MatchString("LB_HTTP_LISTEN") || regexp.MustCompile(v).MatchString("PATH") {
						t.Errorf("NGINX_ENVSUBST_FILTER %q must select the LB_* variables only", v)
					}
				default:
					t.Errorf("environment %s is not used by a %s node", k, node.Kind)
				}
			}
			var args []string
			if len(s.Command) > 1 {
				args = s.Command[1:]
			}
			for _, msg := range checkServiceEnv(node.Kind, s.Environment, args) {
				t.Error(msg)
			}
			if node.Kind == NATS {
				for _, r := range natsauth.Roles {
					if s.Environment[r.PasswordVar()] == "" {
						t.Errorf("no %s: deploy/nats/auth.conf needs it", r.PasswordVar())
					}
				}
			} else if node.Kind != LB && s.Environment["PRESENCE_NATS_PASSWORD"] == "" {
				t.Errorf("no PRESENCE_NATS_PASSWORD: NATS lets in only its users")
			}
			if node.Kind == Gateway || node.Kind == API {
				for _, k := range []string{"PRESENCE_API_KEY", "PRESENCE_API_SECRET"} {
					if s.Environment[k] == "" {
						t.Errorf("no %s", k)
					}
				}
			}

			// The health check is the probe make cluster waits on.
			if node.Kind == LB {
				wantTest := []string{"CMD", "wget", "-q", "-O", "/dev/null", fmt.Sprintf("http://127.0.0.1:%d/readyz", node.WSPort)}
				if !slices.Equal(s.Healthcheck.Test, wantTest) {
					t.Errorf("health check %q, want %q", s.Healthcheck.Test, wantTest)
				}
			} else {
				p, err := top.Probe(node.Name, Compose)
				if err != nil {
					t.Fatal(err)
				}
				wantTest := append([]string{"CMD", "/usr/local/bin/presence-probe"}, p...)
				if !slices.Equal(s.Healthcheck.Test, wantTest) {
					t.Errorf("health check %q, want %q", s.Healthcheck.Test, wantTest)
				}
				if s.Image == "" || s.Build == nil {
					t.Errorf("image %q, build %v: every Presence node runs the image built from the Dockerfile", s.Image, s.Build)
				}
			}

			// Published ports are the node's own, the same on the host.
			for _, p := range s.Ports {
				parts := strings.Split(p, ":")
				hostPort, containerPort := parts[len(parts)-2], parts[len(parts)-1]
				port, err := strconv.Atoi(containerPort)
				if err != nil || hostPort != containerPort || !slices.Contains(node.Ports(), port) {
					t.Errorf("publishes %q: want one of the node's ports %v, as the same host port", p, node.Ports())
				}
			}
			if node.Kind == LB {
				for _, port := range []int{node.Port, node.WSPort} {
					if !slices.ContainsFunc(s.Ports, func(p string) bool { return strings.HasSuffix(p, fmt.Sprintf(":%d:%d", port, port)) }) {
						t.Errorf("the load balancer does not publish port %d", port)
					}
				}
			}

			// Shared configuration: the files make cluster uses.
			switch node.Kind {
			case NATS:
				if !slices.Contains(s.Volumes, "./deploy/nats:/etc/nats:ro") ||
					!slices.Equal(s.Command[1:], []string{"-c", "/etc/nats/nats.conf"}) {
					t.Errorf("NATS must run deploy/nats/nats.conf: command %v, volumes %v", s.Command, s.Volumes)
				}
				if store := s.Environment["NATS_STORE_DIR"]; !slices.ContainsFunc(s.Volumes, func(v string) bool {
					return strings.HasSuffix(v, ":"+store) && !strings.HasPrefix(v, ".")
				}) {
					t.Errorf("JetStream store %s is not on a named volume: %v", store, s.Volumes)
				}
			case LB:
				if !slices.Contains(s.Volumes, "./deploy/nginx/presence.conf.template:/etc/nginx/templates/presence.conf.template:ro") {
					t.Errorf("nginx must run deploy/nginx/presence.conf.template: volumes %v", s.Volumes)
				}
			case Gateway:
				if s.StopGracePeriod == "" {
					t.Errorf("no stop_grace_period: a draining gateway is killed after Docker's default 10 s")
				}
			}
		})
	}

	// Start order: make cluster's waves, each healthy before the next
	// starts; gateways and api nodes also stop before every worker (a
	// draining gateway's closes are applied by the workers).
	waves := startWaves(top)
	for i := 1; i < len(waves); i++ {
		for _, n := range waves[i] {
			deps := f.Services[n.Name].DependsOn
			for _, prev := range waves[i-1] {
				if d, ok := deps[prev.Name]; !ok || d.Condition != "service_healthy" {
					t.Errorf("%s does not wait for %s to be healthy (make cluster starts it in the wave before)", n.Name, prev.Name)
				}
			}
			if n.Kind != Gateway && n.Kind != API {
				continue
			}
			for _, w := range top.Of(Worker) {
				if _, ok := deps[w.Name]; !ok {
					t.Errorf("%s does not depend on %s, so compose may stop the worker first", n.Name, w.Name)
				}
			}
		}
	}
}

// TestDockerfileBuildsThePinnedBinaries checks the image holds every binary
// compose runs, nats-server from the pinned module, with go.work's Go.
func TestDockerfileBuildsThePinnedBinaries(t *testing.T) {
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	work, err := os.ReadFile("../go.work")
	if err != nil {
		t.Fatal(err)
	}
	goLine := regexp.MustCompile(`(?m)^go (\S+)$`).FindStringSubmatch(string(work))
	if goLine == nil || !strings.Contains(df, "ARG GO_VERSION="+goLine[1]+"\n") {
		t.Errorf("Dockerfile's GO_VERSION is not go.work's go %v", goLine)
	}
	for _, p := range append(slices.Clone(Packages), "./cluster/cmd/presence-probe", NATSServerModule) {
		if !strings.Contains(df, p) {
			t.Errorf("Dockerfile does not build %s", p)
		}
	}
	// Every module of the workspace is copied before `go mod download`.
	for _, m := range regexp.MustCompile(`(?m)^\s+\./(\S+)$`).FindAllStringSubmatch(string(work), -1) {
		if !strings.Contains(df, fmt.Sprintf("COPY %[1]s/go.mod %[1]s/go.sum %[1]s/", m[1])) {
			t.Errorf("Dockerfile does not copy %s/go.mod before downloading modules", m[1])
		}
	}
	// Every program compose runs from the image is in it.
	f := readCompose(t)
	for name, s := range f.Services {
		if s.Build == nil {
			continue
		}
		for _, argv := range [][]string{s.Command, s.Healthcheck.Test[1:]} {
			if len(argv) > 0 && !strings.Contains(df, filepath.Base(argv[0])) {
				t.Errorf("%s runs %s, which the Dockerfile does not build", name, argv[0])
			}
		}
	}
}

// TestRunnerEnvIsRead checks make cluster gives every service only settings
// its binary reads.
func TestRunnerEnvIsRead(t *testing.T) {
	cfg := Config{Topology: Default(), DataDir: "/data", APIKey: "k", APISecret: "s", Env: map[string]string{"PRESENCE_LEASE_TTL": "4s"}}
	for _, n := range cfg.Topology.Nodes {
		env, err := cfg.NodeEnv(n.Name)
		if err != nil {
			t.Fatal(err)
		}
		if n.Kind == Worker || n.Kind == Gateway || n.Kind == API {
			if env["PRESENCE_REPLICAS"] != "3" {
				t.Errorf("%s: PRESENCE_REPLICAS=%q, want 3", n.Name, env["PRESENCE_REPLICAS"])
			}
		}
		// PRESENCE_LEASE_TTL is a gateway's alone; Config.Env goes to every
		// service and the others ignore it.
		delete(env, "PRESENCE_LEASE_TTL")
		for _, msg := range checkServiceEnv(n.Kind, env, nil) {
			t.Errorf("%s: %s", n.Name, msg)
		}
	}
}

// TestComposeMonitoringProfile checks the optional monitoring of
// docker-compose.yml: Prometheus and Grafana in the monitoring profile
// alone, on pinned images, published on 127.0.0.1 only; Prometheus scrapes
// exactly the topology's services (deploy/prometheus/prometheus.yml) and
// Grafana reads it with the Presence dashboard provisioned, open to
// anonymous viewers and nothing more.
func TestComposeMonitoringProfile(t *testing.T) {
	f := readCompose(t)
	var profiled []string
	for name, s := range f.Services {
		if len(s.Profiles) > 0 {
			profiled = append(profiled, name)
			if !slices.Equal(s.Profiles, []string{"monitoring"}) {
				t.Errorf("%s: profiles %v, want [monitoring]", name, s.Profiles)
			}
		}
	}
	slices.Sort(profiled)
	if !slices.Equal(profiled, []string{"grafana", "prometheus"}) {
		t.Fatalf("services of the monitoring profile %v, want grafana and prometheus", profiled)
	}
	pinned := regexp.MustCompile(`^[a-z0-9./-]+:v?\d+\.\d+\.\d+$`)
	for _, name := range profiled {
		s := f.Services[name]
		if !pinned.MatchString(s.Image) {
			t.Errorf("%s: image %q is not pinned to a version", name, s.Image)
		}
		if len(s.Ports) == 0 {
			t.Errorf("%s publishes no port", name)
		}
		for _, p := range s.Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("%s publishes %q beyond 127.0.0.1", name, p)
			}
		}
		if _, ok := f.Volumes[name]; !ok {
			t.Errorf("%s keeps its data on no named volume", name)
		}
	}

	// Prometheus runs the generated configuration, which scrapes every node
	// that serves /metrics: its job is the node's kind, its instance its name.
	prom := f.Services["prometheus"]
	if !slices.Contains(prom.Volumes, "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro") {
		t.Errorf("prometheus does not read deploy/prometheus/prometheus.yml: volumes %v", prom.Volumes)
	}
	var promConf struct {
		Global struct {
			ScrapeInterval string `yaml:"scrape_interval"`
		} `yaml:"global"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			MetricsPath   string `yaml:"metrics_path"`
			StaticConfigs []struct {
				Targets []string          `yaml:"targets"`
				Labels  map[string]string `yaml:"labels"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, "../deploy/prometheus/prometheus.yml", &promConf)
	var scraped, want []string
	for _, sc := range promConf.ScrapeConfigs {
		if sc.MetricsPath != "" && sc.MetricsPath != "/metrics" {
			t.Errorf("job %s scrapes %s, not /metrics", sc.JobName, sc.MetricsPath)
		}
		for _, st := range sc.StaticConfigs {
			for _, target := range st.Targets {
				scraped = append(scraped, fmt.Sprintf("%s %s %s", sc.JobName, st.Labels["instance"], target))
			}
		}
	}
	top := Default()
	for _, n := range top.Nodes {
		if n.MetricsPort() != 0 {
			want = append(want, fmt.Sprintf("%s %s %s:%d", n.Kind, n.Name, n.Name, n.MetricsPort()))
		}
	}
	slices.Sort(scraped)
	slices.Sort(want)
	if !slices.Equal(scraped, want) {
		t.Errorf("prometheus scrapes (job instance target)\n  %q\nthe topology's services serve /metrics at\n  %q", scraped, want)
	}
	for _, n := range top.Nodes {
		if n.MetricsPort() == 0 || len(f.Services[n.Name].Ports) == 0 || n.Kind == LB {
			continue
		}
		for _, p := range f.Services[n.Name].Ports {
			if strings.HasSuffix(p, fmt.Sprintf(":%d", n.MetricsPort())) {
				t.Errorf("%s publishes its metrics port: %q", n.Name, p)
			}
		}
	}

	// Grafana: the datasource is the profile's Prometheus, told its scrape
	// interval; the dashboards directory it provisions from holds
	// presence.json; anonymous visitors may only view.
	graf := f.Services["grafana"]
	mounts := map[string]string{}
	for _, v := range graf.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && strings.HasPrefix(parts[0], "./") {
			mounts[parts[1]] = parts[0]
		}
	}
	var ds struct {
		Datasources []struct {
			Type, URL string
			IsDefault bool `yaml:"isDefault"`
			JSONData  struct {
				TimeInterval string `yaml:"timeInterval"`
			} `yaml:"jsonData"`
		} `yaml:"datasources"`
	}
	dsDir, ok := mounts["/etc/grafana/provisioning/datasources"]
	if !ok {
		t.Fatalf("grafana mounts no datasources: %v", graf.Volumes)
	}
	readYAML(t, filepath.Join("..", dsDir, "prometheus.yml"), &ds)
	promPort := strings.Split(prom.Ports[0], ":")[2]
	if len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" || ds.Datasources[0].URL != "http://prometheus:"+promPort || !ds.Datasources[0].IsDefault {
		t.Errorf("grafana's datasources %+v, want the default one, prometheus at http://prometheus:%s", ds.Datasources, promPort)
	} else if got := ds.Datasources[0].JSONData.TimeInterval; got != promConf.Global.ScrapeInterval || got != PrometheusScrapeInterval {
		t.Errorf("grafana's datasource timeInterval %q, Prometheus scrapes every %q", got, promConf.Global.ScrapeInterval)
	}
	var providers struct {
		Providers []struct {
			Type    string
			Options struct{ Path string }
		}
	}
	provDir, ok := mounts["/etc/grafana/provisioning/dashboards"]
	if !ok {
		t.Fatalf("grafana mounts no dashboard providers: %v", graf.Volumes)
	}
	readYAML(t, filepath.Join("..", provDir, "presence.yml"), &providers)
	if len(providers.Providers) != 1 || providers.Providers[0].Type != "file" {
		t.Fatalf("dashboard providers %+v, want one of type file", providers.Providers)
	}
	dashDir, ok := mounts[providers.Providers[0].Options.Path]
	if !ok {
		t.Fatalf("dashboards are provisioned from %s, which is not mounted: %v", providers.Providers[0].Options.Path, graf.Volumes)
	}
	if _, err := os.Stat(filepath.Join("..", dashDir, "presence.json")); err != nil {
		t.Errorf("the dashboards directory %s: %v", dashDir, err)
	}
	if home := graf.Environment["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]; home != providers.Providers[0].Options.Path+"/presence.json" {
		t.Errorf("home dashboard %q is not the provisioned presence.json", home)
	}
	if graf.Environment["GF_AUTH_ANONYMOUS_ENABLED"] == "true" && graf.Environment["GF_AUTH_ANONYMOUS_ORG_ROLE"] != "Viewer" {
		t.Errorf("anonymous visitors are %q, want Viewer", graf.Environment["GF_AUTH_ANONYMOUS_ORG_ROLE"])
	}
	if pw := graf.Environment["GF_SECURITY_ADMIN_PASSWORD"]; !strings.HasPrefix(pw, "${GRAFANA_ADMIN_PASSWORD") {
		t.Errorf("GF_SECURITY_ADMIN_PASSWORD %q: take it from ${GRAFANA_ADMIN_PASSWORD}", pw)
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
