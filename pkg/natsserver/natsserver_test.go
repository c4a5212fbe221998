package natsserver

import (
	"testing"
	"time"
)

func TestSyncAlwaysReachesJetStream(t *testing.T) {
	for _, always := range []bool{false, true} {
		s, err := Start(Options{Addr: "127.0.0.1:0", StoreDir: t.TempDir(), SyncAlways: always})
		if err != nil {
			t.Fatal(err)
		}
		jc := s.JetStreamConfig()
		s.Shutdown()
		s.WaitForShutdown()
		if jc == nil {
			t.Fatal("JetStream is not enabled")
		}
		// Off, nats-server's default interval holds.
		if jc.SyncAlways != always || (!always && jc.SyncInterval != 2*time.Minute) {
			t.Errorf("SyncAlways: %v gave JetStream sync_always %v, sync_interval %v", always, jc.SyncAlways, jc.SyncInterval)
		}
	}
}
