# syntax=docker/dockerfile:1
#
# One image with every binary Presence's multi-node topology runs (see
# docker-compose.yml): presence-gateway, presence-worker, presence-api,
# presence-probe (the health check: the image has no shell), and nats-server,
# built from github.com/nats-io/nats-server/v2 at exactly the version go.work
# pins (pkg/go.mod), the same code the embedded server of `make run` is.
# Pick the program with the container's command:
#
#   docker build -t presence .
#   docker run presence /usr/local/bin/presence-gateway

# The Go of go.work's go line (cluster/compose_test.go checks they agree).
ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
# Modules first: a code change does not download them again.
COPY go.work go.work.sum ./
COPY pkg/go.mod pkg/go.sum pkg/
COPY gateway/go.mod gateway/go.sum gateway/
COPY presence-worker/go.mod presence-worker/go.sum presence-worker/
COPY api/go.mod api/go.sum api/
COPY allinone/go.mod allinone/go.sum allinone/
COPY cluster/go.mod cluster/go.sum cluster/
COPY bench/go.mod bench/go.sum bench/
RUN go mod download
COPY . .
RUN --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags='-s -w' -o /out/bin/ \
        ./gateway/cmd/presence-gateway \
        ./presence-worker/cmd/presence-worker \
        ./api/cmd/presence-api \
        ./cluster/cmd/presence-probe \
 && go build -trimpath -ldflags='-s -w' -o /out/bin/nats-server github.com/nats-io/nats-server/v2 \
 && mkdir -p /out/data

# Static binaries on distroless: no shell, runs as an unprivileged user.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/bin/ /usr/local/bin/
# JetStream (nats-*) and the api's query index live in /data; a named volume
# mounted there starts out owned by the image's user.
COPY --from=build --chown=nonroot:nonroot /out/data /data
WORKDIR /data
USER nonroot
CMD ["/usr/local/bin/presence-gateway"]
