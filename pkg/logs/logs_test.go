package logs

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestJSONWhenNotATerminalWithAttrsOnEveryLine(t *testing.T) {
	var buf bytes.Buffer
	log, err := Options{Level: "info", Format: "auto"}.New(&buf, "node", "gateway-1")
	if err != nil {
		t.Fatal(err)
	}
	log.Debug("hidden")
	log.Info("shown", "k", 1)
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("not one JSON line: %q", buf.String())
	}
	if line["msg"] != "shown" || line["node"] != "gateway-1" {
		t.Fatalf("line %v, want msg and node", line)
	}
}

func TestBadLevelIsAClearError(t *testing.T) {
	_, err := Options{Level: "loud"}.New(&bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "loud") {
		t.Fatalf("err = %v", err)
	}
}
