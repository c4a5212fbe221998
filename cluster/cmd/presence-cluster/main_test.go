package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestLoadSecret(t *testing.T) {
	dir := t.TempDir()
	if s, generated, err := loadSecret("given", dir); err != nil || s != "given" || generated {
		t.Fatalf("a given secret: %q %v %v", s, generated, err)
	}
	s, generated, err := loadSecret("", dir)
	if err != nil || len(s) != 64 || !generated {
		t.Fatalf("a generated secret: %q %v %v", s, generated, err)
	}
	again, generated, err := loadSecret("", dir)
	if err != nil || again != s || generated {
		t.Fatalf("the kept secret: %q (first %q) %v %v", again, s, generated, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "api-secret")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret file: %v %v", fi, err)
	}
}
