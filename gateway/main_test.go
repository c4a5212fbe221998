package gateway

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine a gateway starts has an owner that waits for it on Close.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
