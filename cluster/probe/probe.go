// Package probe tells whether a node of the cluster is up. The same checks run
// as docker-compose.yml's health checks (the presence-probe command, in the
// image, which has no shell) and as `make cluster`'s readiness waits.
//
// A check is a command line:
//
//	http URL [STATUS]             GET URL answers STATUS (default 200)
//	nats MONITOR_URL              the NATS node knows a JetStream meta leader
//	                              (/jsz), its /healthz passes, and every stream
//	                              and durable consumer it holds has a leader
//	nats-conn NAME MONITOR_URL... the /connz of one of the NATS monitoring
//	                              endpoints lists a client connection named NAME
//
// Presence's services (gateways, workers, api nodes) are checked with http
// on their /readyz.
package probe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// client never reuses connections: a probe must see a fresh listener.
var client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// Check runs the check args once. ctx bounds it; without a deadline it gives
// up after 5 s.
func Check(ctx context.Context, args []string) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	if len(args) == 0 {
		return errors.New("probe: no check given (http URL [STATUS] | nats MONITOR_URL | nats-conn NAME MONITOR_URL...)")
	}
	switch args[0] {
	case "http":
		if len(args) < 2 || len(args) > 3 {
			return errors.New("probe: usage: http URL [STATUS]")
		}
		want := http.StatusOK
		if len(args) == 3 {
			n, err := strconv.Atoi(args[2])
			if err != nil {
				return fmt.Errorf("probe: status %q: %w", args[2], err)
			}
			want = n
		}
		return HTTP(ctx, args[1], want)
	case "nats":
		if len(args) != 2 {
			return errors.New("probe: usage: nats MONITOR_URL")
		}
		return NATS(ctx, args[1])
	case "nats-conn":
		if len(args) < 3 {
			return errors.New("probe: usage: nats-conn NAME MONITOR_URL...")
		}
		return NATSConn(ctx, args[1], args[2:]...)
	}
	return fmt.Errorf("probe: unknown check %q", args[0])
}

// HTTP checks that GET url answers status want.
func HTTP(ctx context.Context, url string, want int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != want {
		return fmt.Errorf("probe: GET %s answered %d, want %d: %s", url, resp.StatusCode, want, strings.TrimSpace(string(body)))
	}
	return nil
}

// NATS checks that the NATS node with monitoring endpoint monitor is ready:
// it knows a JetStream meta leader, its /healthz passes, and every stream and
// durable consumer it holds has a leader (after a restart they elect theirs
// after the meta leader; until then requests to them go unanswered). /jsz
// comes first because a failing /healthz is logged by the server as a warning.
func NATS(ctx context.Context, monitor string) error {
	monitor = strings.TrimSuffix(monitor, "/")
	var jsz struct {
		Meta *struct {
			Leader string `json:"leader"`
		} `json:"meta_cluster"`
		Accounts []struct {
			Streams []struct {
				Name      string   `json:"name"`
				Cluster   *cluster `json:"cluster"`
				Consumers []struct {
					Name    string   `json:"name"`
					Cluster *cluster `json:"cluster"`
					Config  struct {
						Durable string `json:"durable_name"`
					} `json:"config"`
				} `json:"consumer_detail"`
			} `json:"stream_detail"`
		} `json:"account_details"`
	}
	if err := getJSON(ctx, monitor+"/jsz?accounts=true&streams=true&consumers=true&config=true", &jsz); err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	if jsz.Meta == nil || jsz.Meta.Leader == "" {
		return fmt.Errorf("probe: %s: no JetStream meta leader yet", monitor)
	}
	if err := HTTP(ctx, monitor+"/healthz", http.StatusOK); err != nil {
		return err
	}
	for _, a := range jsz.Accounts {
		for _, s := range a.Streams {
			if !s.Cluster.led() {
				return fmt.Errorf("probe: %s: stream %s has no leader yet", monitor, s.Name)
			}
			for _, c := range s.Consumers {
				if c.Config.Durable != "" && !c.Cluster.led() {
					return fmt.Errorf("probe: %s: consumer %s > %s has no leader yet", monitor, s.Name, c.Name)
				}
			}
		}
	}
	return nil
}

// cluster is the cluster part of a stream's or consumer's info.
type cluster struct {
	Leader string `json:"leader"`
}

func (c *cluster) led() bool { return c == nil || c.Leader != "" }

// NATSConn checks that one of the NATS servers whose monitoring endpoints are
// given has a client connection named name.
func NATSConn(ctx context.Context, name string, monitors ...string) error {
	var errs []error
	for _, m := range monitors {
		found, err := hasConn(ctx, strings.TrimSuffix(m, "/"), name)
		if found {
			return nil
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("probe: no NATS connection named %q: %w", name, errors.Join(errs...))
	}
	return fmt.Errorf("probe: no NATS connection named %q", name)
}

func getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s answered %d", url, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	return nil
}

func hasConn(ctx context.Context, monitor, name string) (bool, error) {
	// Every service opens a connection or two; 4096 is far more than a
	// Presence cluster has (WebSocket clients never connect to NATS).
	var connz struct {
		Connections []struct {
			Name string `json:"name"`
		} `json:"connections"`
	}
	if err := getJSON(ctx, monitor+"/connz?limit=4096", &connz); err != nil {
		return false, err
	}
	for _, c := range connz.Connections {
		if c.Name == name {
			return true, nil
		}
	}
	return false, nil
}
