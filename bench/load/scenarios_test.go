package load

import (
	"context"
	"testing"
	"time"
)

func TestChurnAgainstThePeerHoldsLowRatesAndSeesEveryTransition(t *testing.T) {
	url := startPeer(t, "s")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sys := NewCentrifuge(url, "s", []string{"127.0.0.1"})
	res, err := Churn(ctx, sys, ChurnParams{Users: 40, Channels: 4, Prefix: "ch", Rates: []float64{20, 40}, Step: time.Second, MaxLag: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Steps) != 2 {
		t.Fatalf("steps %+v, want both rates run", res.Steps)
	}
	for _, st := range res.Steps {
		if !st.Held || st.Started == 0 || st.Resolved != st.Started {
			t.Errorf("step %+v: want it held with every transition seen", st)
		}
	}
	if res.TransitionsPerSec < 30 {
		t.Errorf("transitions/s %.1f, want about 40", res.TransitionsPerSec)
	}
}

func TestFanoutAgainstThePeerCountsEveryWatcherEachRound(t *testing.T) {
	url := startPeer(t, "s")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sys := NewCentrifuge(url, "s", []string{"127.0.0.1"})
	pool := NewPool(time.Minute)
	defer pool.Close()
	p := FanoutParams{Target: "star", Watchers: 30, Channels: 3, Prefix: "fan"}
	f, got, err := StartFanout(ctx, sys, pool, p, 8)
	if err != nil || got.Conns != 30 {
		t.Fatalf("StartFanout: %+v, %v; want 30 watchers", got, err)
	}
	var star Socket
	for _, online := range []bool{true, false} {
		f.Arm(online)
		began := time.Now()
		if online {
			if star, err = sys.Member(ctx, 0, p.Target, FanoutChannelIDs(p)); err != nil {
				t.Fatal(err)
			}
		} else {
			star.Close()
		}
		r := f.Wait(ctx, 10*time.Second)
		if r.Received != 30 || r.Of != 30 || r.LastUnixNano < began.UnixNano() {
			t.Fatalf("online=%v: round %+v, want all 30 watchers after %d", online, r, began.UnixNano())
		}
	}
}
