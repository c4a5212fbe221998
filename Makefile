# Presence: two commands for a newcomer.
#   make run   the whole service in one process, on embedded NATS
#   make test  every test (Go with -race, the SDK end-to-end suite, the demo
#              page in headless Chromium)

MODULES  := pkg gateway presence-worker api allinone cluster bench
PACKAGES := $(addsuffix /...,$(addprefix ./,$(MODULES)))
GO       ?= go

.PHONY: run demo demo-sdk test test-browser chromium check unit e2e-deps fuzz fuzz-short build clean cluster chaos bench bench-full dashboard-shot

FUZZTIME ?= 10m
FUZZCOUNT ?= 2000x

run:
	$(GO) run ./allinone/cmd/presence

# The demo page's stream-chat SDK, bundled on this machine from the version
# e2e/package.json pins (with esbuild, pinned there too), into a gitignored
# file the all-in-one serves at /demo/stream-chat.js (-demo-sdk). The SDK's
# licence does not let Presence redistribute it, so it is neither committed
# nor embedded: each user downloads it from npm. npm ci runs only when
# e2e/node_modules lacks a pinned package; the bundle is rebuilt when the
# lock or the script changes.
DEMO_SDK := e2e/demo-sdk/stream-chat.js

demo-sdk: $(DEMO_SDK)

$(DEMO_SDK): e2e/package-lock.json e2e/build-demo-sdk.mjs
	@{ command -v node && command -v npm; } >/dev/null || { echo "make demo-sdk needs Node.js (>= 20) and npm, not found here: the demo page's stream-chat SDK is downloaded from npm, as Presence does not ship it (its licence)"; exit 1; }
	cd e2e && { npm ls --depth=0 >/dev/null 2>&1 || npm ci --no-audit --no-fund --loglevel=error; } && node build-demo-sdk.mjs

# make run with development tokens, for the demo page (/demo/), after
# building its SDK: anyone can sign in as anyone, so it listens on loopback
# only.
demo: demo-sdk
	$(GO) run ./allinone/cmd/presence -dev-tokens -http-addr 127.0.0.1:3030 -ws-addr 127.0.0.1:8800

# demo-sdk after e2e-deps (make runs them in order): the bundle for the
# browser test, from the packages just installed (about 0.3 s).
test: check e2e-deps demo-sdk chromium unit fuzz-short

# Debian's Chromium, for the demo page's browser test (allinone TestDemoPage),
# installed when missing: CI starts from a clean Debian machine, as root.
chromium:
	@command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)

# The demo page's browser test alone; its screenshot lands in _artifacts/.
test-browser: demo-sdk chromium
	PRESENCE_BROWSER="$$(command -v chromium)" $(GO) test -race -count=1 -run '^TestDemoPage$$' -v -artifacts ./allinone

# Formatting and vet across every module.
check:
	@unformatted="$$(gofmt -l $(MODULES))"; \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PACKAGES)

# The SDK end-to-end suite's pinned npm packages (run by allinone's TestE2E),
# and esbuild, for make demo-sdk.
e2e-deps:
	@command -v node >/dev/null || { echo "node (>= 20) and npm are needed for the SDK end-to-end suite"; exit 1; }
	cd e2e && npm ci --no-audit --no-fund --loglevel=error

# PRESENCE_E2E and PRESENCE_BROWSER make the SDK suite and the browser test
# run (they skip without them, in a plain go test).
unit:
	PRESENCE_E2E=1 PRESENCE_BROWSER="$$(command -v chromium)" $(GO) test -race -count=1 -timeout 8m -artifacts $(PACKAGES)

# A few seconds per fuzz target in make test: every parser of what clients
# send never panics and keeps its properties (the filter language, WebSocket
# frames, tokens, ids and subjects, connection ids, user profiles, the
# connect query, the api's request bodies and the index's reading of
# filters). `make fuzz` runs each for FUZZTIME. The corpus of each target
# (<package>/testdata/fuzz/<target>) also runs in the unit tests; a failing
# input the fuzzer finds is written there, to keep as a regression.
FUZZ_TARGETS := \
	./pkg/filter:FuzzParseFilter \
	./pkg/filter:FuzzSort \
	./gateway/socket:FuzzClientBytes \
	./pkg/token:FuzzCheck \
	./pkg/subject:FuzzCheckIDs \
	./pkg/subject:FuzzParseSubjects \
	./pkg/connid:FuzzParse \
	./pkg/model:FuzzUserJSON \
	./gateway:FuzzConnect \
	./api:FuzzParseMembers \
	./api:FuzzChannelBodies \
	./api:FuzzUserBodies \
	./api:FuzzQueryPayload \
	./api:FuzzChannelTypeBody \
	./api:FuzzQueryIndex \
	./api:FuzzQueryMembers

# fuzz-short gives each target a count of inputs, not a time: Go 1.26's fuzz
# coordinator can fail a timed run at its deadline having found nothing
# (golang/go#75804), which would fail make test at random. `make fuzz`
# (FUZZTIME, a time) is for longer runs by hand.
fuzz-short:
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t#*:} ($${t%%:*}), $(FUZZCOUNT) inputs"; \
		$(GO) test $${t%%:*} -run '^$$' -fuzz "^$${t#*:}\$$" -fuzztime $(FUZZCOUNT) -fuzzminimizetime 100x; \
	done

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t#*:} ($${t%%:*}) for $(FUZZTIME)"; \
		$(GO) test $${t%%:*} -run '^$$' -fuzz "^$${t#*:}\$$" -fuzztime $(FUZZTIME); \
	done

build:
	mkdir -p bin
	$(GO) build -o bin/ ./allinone/cmd/presence ./gateway/cmd/presence-gateway ./presence-worker/cmd/presence-worker ./api/cmd/presence-api

clean:
	rm -rf bin data _artifacts e2e/node_modules e2e/demo-sdk deploy/grafana/preview/node_modules

# The multi-node topology of docker-compose.yml as plain processes on
# loopback, in the foreground: 3 NATS nodes (JetStream, replicas 3), 2
# workers, 2 gateways, 2 api nodes, nginx on :3030 and :8800 (when installed).
# Ctrl-C stops it in order. Data and pid files: $PRESENCE_DATA_DIR/cluster
# (default ./data/cluster).
cluster:
	mkdir -p bin
	$(GO) build -o bin/ ./cluster/cmd/presence-cluster
	exec env GO='$(GO)' ./bin/presence-cluster -build

# The chaos scenarios of cluster/chaos at full size, each on a fresh cluster
# of processes on loopback: kill -9 of a gateway (10 runs), a silent client,
# kill -9 of a worker mid-stream, kill -9 of a NATS node, a graceful drain, a
# reconnect storm of 6,000 clients, closes racing reconnects, the presence
# bucket deleted and purged. Prints a markdown table (README, "Operations:
# failure behaviour"); exits non-zero if an invariant broke. make test runs
# the same scenarios scaled down (cluster/chaos_test.go).
# CHAOS_ARGS: -run <regexp> (some scenarios), -logs <dir>, -out <file>.
chaos:
	mkdir -p bin
	$(GO) build -o bin/ ./cluster/cmd/presence-chaos
	env GO='$(GO)' ./bin/presence-chaos $(CHAOS_ARGS)

# Benchmarks (bench/): the scenarios at quick sizes, a table on stdout and
# bench/results/latest.json. bench-full runs the full sizes, and 90,000
# clients over 5 gateways of make cluster's topology.
# BENCH_ARGS: more presence-bench flags, e.g. -run fanout, or
# -presence-http=127.0.0.1:3030 to serve the measured Presence's /metrics
# where Prometheus and the dashboard look (make run stopped meanwhile).
bench:
	$(GO) run ./bench/cmd/presence-bench -profile quick $(BENCH_ARGS)

bench-full:
	$(GO) run ./bench/cmd/presence-bench -profile full $(BENCH_ARGS)

# docs/img/dashboard.png: the Grafana dashboard (deploy/grafana/dashboards)
# drawn from live numbers without Grafana: the all-in-one under a few
# minutes of load, scraped by Prometheus, each panel's query drawn with
# uPlot and screenshotted by headless Chromium (bench/cmd/presence-dashshot).
# Needs prometheus and chromium on $PATH (Debian: apt-get install prometheus
# chromium) and npm. DASHSHOT_ARGS: -duration 4m, -out FILE, -keep FILE.html,
# or -prometheus URL -range 15m to draw from a Prometheus of your own.
dashboard-shot:
	cd deploy/grafana/preview && npm ci --no-audit --no-fund --loglevel=error
	$(GO) run ./bench/cmd/presence-dashshot $(DASHSHOT_ARGS)
