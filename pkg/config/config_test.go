package config

import (
	"flag"
	"testing"
)

func TestFlagBeatsEnvBeatsDefault(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	a := fs.String("http-addr", ":3030", "")
	b := fs.String("ws-addr", ":8800", "")
	c := fs.String("data-dir", "./data", "")
	env := map[string]string{"PRESENCE_HTTP_ADDR": ":1", "PRESENCE_WS_ADDR": ":2"}
	if err := Parse(fs, []string{"-ws-addr", ":9"}, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if *a != ":1" || *b != ":9" || *c != "./data" {
		t.Fatalf("got http=%q ws=%q data=%q, want :1 :9 ./data", *a, *b, *c)
	}
}

func TestBadEnvValueNamesTheVariable(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.Bool("dev-tokens", false, "")
	err := Parse(fs, nil, func(k string) string {
		if k == "PRESENCE_DEV_TOKENS" {
			return "maybe"
		}
		return ""
	})
	if err == nil {
		t.Fatal("bad boolean accepted")
	}
}
