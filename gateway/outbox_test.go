package gateway

import (
	"fmt"
	"testing"
)

func TestOutboxKeepsOrderAndBoundsTheBacklog(t *testing.T) {
	o := newOutbox(3)
	for i := range 3 {
		if !o.push([]byte(fmt.Sprint(i))) {
			t.Fatalf("push %d refused below the limit", i)
		}
	}
	if o.push([]byte("3")) {
		t.Fatal("a fourth event was queued past the limit of 3")
	}
	select {
	case <-o.ready:
	default:
		t.Fatal("the writer was not woken")
	}
	got := o.take()
	if fmt.Sprintf("%s", got) != "[0 1 2]" {
		t.Fatalf("take = %s, want [0 1 2]", got)
	}
	if len(o.take()) != 0 || !o.push([]byte("4")) {
		t.Fatal("after a take the queue must be empty and accept again")
	}
}
