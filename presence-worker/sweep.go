package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/presencehq/presence/pkg/connevent"
	"github.com/presencehq/presence/pkg/store"
	"github.com/presencehq/presence/pkg/subject"
)

// nodeGone handles a gateway node restarting under a new epoch (every
// connection of its earlier runs is gone now, not when a lease lapses: I6) or
// its lease lapsing (every connection of the expired epoch is gone: I4).
func (w *Worker) nodeGone(ev connevent.Event, redelivery bool, progress func()) error {
	if err := subject.CheckNode(ev.Node); err != nil {
		return nil
	}
	w.learnEpoch(ev.Node, ev.Epoch)
	ctx, cancel := context.WithTimeout(w.ctx, time.Minute)
	users, err := w.usersOfNode(ctx, ev.Node)
	cancel()
	if err != nil {
		return err
	}
	// One deadline per user, and the message kept alive as the sweep goes,
	// so a node of 100k users is swept however long it takes; a sweep
	// redelivered after a crash re-emits what it may have written unsent.
	// Users are independent (each write is a compare-and-set of that user
	// alone), so they are swept sweepParallel at a time: a node's users go
	// offline together, within the lease (I4), not one write after another.
	var (
		wg           sync.WaitGroup
		mu           sync.Mutex
		firstErr     error
		lastProgress = time.Now()
		slots        = make(chan struct{}, sweepParallel)
	)
	for _, u := range users {
		if w.ctx.Err() != nil {
			break
		}
		mu.Lock()
		failed := firstErr != nil
		mu.Unlock()
		if failed {
			break
		}
		if time.Since(lastProgress) > 5*time.Second {
			progress()
			lastProgress = time.Now()
		}
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			ctx, cancel := context.WithTimeout(w.ctx, 10*time.Second)
			defer cancel()
			// An event of no kind only prunes dead connections and emits
			// the transition if that made one.
			if err := w.applyEvent(ctx, connevent.Event{User: u, At: time.Now().UTC()}, redelivery); err != nil {
				mu.Lock()
				firstErr = cmp.Or(firstErr, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := cmp.Or(firstErr, w.ctx.Err()); err != nil {
		return err
	}
	if len(users) > 0 {
		w.log.Info("swept a gone node's connections", "node", ev.Node, "why", ev.Kind, "users", len(users))
	}
	return nil
}

// sweepParallel is how many users of a gone node are swept at once.
const sweepParallel = 32

// usersOfNode lists the users with recent connection events on node. Every
// live connection sends one at least every ActiveInterval, and the input
// stream keeps twice that, so every user still connected there is found.
func (w *Worker) usersOfNode(ctx context.Context, node string) ([]string, error) {
	cons, err := w.js.OrderedConsumer(ctx, store.StreamInput, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject.ConnEventsOfNode(node)},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		HeadersOnly:    true,
	})
	if err != nil {
		return nil, fmt.Errorf("sweep %s: %w", node, err)
	}
	seen := map[string]struct{}{}
	var users []string
	for {
		batch, err := cons.FetchNoWait(500)
		if err != nil {
			return nil, fmt.Errorf("sweep %s: %w", node, err)
		}
		n := 0
		var last jetstream.Msg
		for msg := range batch.Messages() {
			n++
			last = msg
			subj := msg.Subject()
			u := subj[strings.LastIndexByte(subj, '.')+1:]
			if _, ok := seen[u]; !ok {
				seen[u] = struct{}{}
				users = append(users, u)
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return nil, fmt.Errorf("sweep %s: %w", node, err)
		}
		if n == 0 {
			break
		}
		if md, err := last.Metadata(); err == nil && md.NumPending == 0 {
			break
		}
	}
	return users, nil
}
