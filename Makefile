# Presence: two commands for a newcomer.
#   make run   the whole service in one process, on embedded NATS
#   make test  every test (Go with -race, the SDK end-to-end suite)

MODULES  := pkg gateway presence-worker api allinone cluster bench
PACKAGES := $(addsuffix /...,$(addprefix ./,$(MODULES)))
GO       ?= go

.PHONY: run test check unit e2e-deps fuzz fuzz-short build clean cluster chaos bench bench-full

FUZZTIME ?= 10m
FUZZCOUNT ?= 2000x

run:
	$(GO) run ./allinone/cmd/presence

test: check e2e-deps unit fuzz-short

# Formatting and vet across every module.
check:
	@unformatted="$$(gofmt -l $(MODULES))"; \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PACKAGES)

# The SDK end-to-end suite's pinned npm packages (run by allinone's TestE2E).
e2e-deps:
	@command -v node >/dev/null || { echo "node (>= 20) and npm are needed for the SDK end-to-end suite"; exit 1; }
	cd e2e && npm ci --no-audit --no-fund --loglevel=error

unit:
	PRESENCE_E2E=1 $(GO) test -race -count=1 -timeout 8m $(PACKAGES)

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
	rm -rf bin data e2e/node_modules

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
