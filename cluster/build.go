package cluster

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
)

// Packages are the services' main packages, relative to the repository.
var Packages = []string{
	"./gateway/cmd/presence-gateway",
	"./presence-worker/cmd/presence-worker",
	"./api/cmd/presence-api",
}

// NATSServerModule is built into nats-server at the version the workspace
// pins (pkg/go.mod), the same one the embedded server of make run is.
const NATSServerModule = "github.com/nats-io/nats-server/v2"

// Build builds every binary a cluster runs into binDir, with the go command
// found on $PATH ($GO overrides), in the workspace at root. With a warm build
// cache this takes a few seconds; from a cold one, a minute or more.
func Build(ctx context.Context, root, binDir string, out io.Writer) error {
	goCmd := os.Getenv("GO")
	if goCmd == "" {
		goCmd = "go"
	}
	binDir, err := filepath.Abs(binDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return err
	}
	// One go build, so packages compile in parallel; nats-server/v2 is
	// written as nats-server.
	args := append([]string{"build", "-o", binDir + string(filepath.Separator)}, Packages...)
	args = append(args, NATSServerModule)
	cmd := exec.CommandContext(ctx, goCmd, args...)
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("cluster: %s %v: %w", goCmd, args, err)
	}
	return nil
}
