package api

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	bolt "go.etcd.io/bbolt"

	"github.com/presencehq/presence/pkg/apierror"
	"github.com/presencehq/presence/pkg/model"
	"github.com/presencehq/presence/pkg/store"
)

// Who is a member of a channel: each member is a key of its own in
// presence_members (store.MemberKey), written with compare-and-set like
// every record; and each user's channels are listed in presence_memberships,
// which the worker reads to route the user's presence (pkg/route). A change
// writes the member, then the memberships, then sends the events, then
// answers.

// writeParallel is how many member or membership writes one request makes
// at once: a channel of 10,000 members is deleted in about a second, and
// one request never floods JetStream.
const writeParallel = 16

// parallel runs fn for each of items, writeParallel at a time, and returns
// the first error (after every fn started has returned).
func parallel[T any](ctx context.Context, items []T, fn func(context.Context, T) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		slots = make(chan struct{}, writeParallel)
	)
	for _, it := range items {
		if ctx.Err() != nil {
			break
		}
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			if err := fn(ctx, it); err != nil {
				mu.Lock()
				if first == nil {
					first = err
					cancel()
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// isMember reports whether the client-side caller is a member of channel
// typ:id (one key lookup; always false server-side, where it is not asked).
func (s *Server) isMember(ctx context.Context, cl caller, typ, id string) (bool, error) {
	if cl.server {
		return false, nil
	}
	_, err := s.st.Members.Get(ctx, store.MemberKey(typ, id, cl.user))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return false, nil
	case err != nil:
		return false, err
	}
	return true, nil
}

// memberChange is one member written by a change: the record (as it was,
// if removed) and the version of its event, the member key's revision (a
// removal's lower bound: the revision it replaced + 1).
type memberChange struct {
	m   model.Member
	rev uint64
}

func changedIDs(cs []memberChange) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.m.UserID
	}
	return out
}

// checkMemberChange refuses, before anything is written, a change that
// would take cid past MaxChannelMembers or change the role of a user who is
// not a member (nor added by the same call). Calls racing each other may
// together pass the limit by what each adds.
func (s *Server) checkMemberChange(ctx context.Context, cid string, add []memberInput, roles []roleChange, remove []string) error {
	if len(add) == 0 && len(roles) == 0 {
		return nil
	}
	if err := s.idx.sync(ctx, store.BucketMembers); err != nil {
		return err
	}
	var refused error
	err := s.idx.view(func(tx *bolt.Tx) error {
		mr := newMemberReader(tx)
		joining := 0
		adding := map[string]bool{}
		for _, m := range add {
			adding[m.UserID] = true
			if !mr.has(cid, m.UserID) && !slices.Contains(remove, m.UserID) {
				joining++
			}
		}
		if joining > 0 && mr.count(cid)+joining > MaxChannelMembers {
			refused = apierror.Input("a channel has at most %d members", MaxChannelMembers)
			return nil
		}
		for _, r := range roles {
			if !adding[r.UserID] && !mr.has(cid, r.UserID) {
				refused = apierror.Input("user %s is not a member of channel %s", r.UserID, cid)
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return refused
}

// changeMembers applies one call's member changes to channel typ:id, one
// member key each, writeParallel at a time: the net change per user (a user
// both added and removed was either never a member, and nothing happens, or
// is removed; a role change applies after the add). The changes are listed
// in the order the call names their users.
func (s *Server) changeMembers(ctx context.Context, typ, id string, add []memberInput, roles []roleChange, remove []string, now time.Time) (added, removed, changed []memberChange, err error) {
	var users []string
	adds := map[string]memberInput{}
	roleOf := map[string][]string{}
	for _, m := range add {
		users = append(users, m.UserID)
		adds[m.UserID] = m
	}
	for _, r := range roles {
		users = append(users, r.UserID)
		roleOf[r.UserID] = append(roleOf[r.UserID], r.ChannelRole)
	}
	users = append(users, remove...)
	slices.Sort(users)
	users = slices.Compact(users)
	type result struct {
		c                  memberChange
		added, gone, wrote bool
	}
	results := make([]result, len(users))
	idx := make([]int, len(users))
	for i := range idx {
		idx[i] = i
	}
	err = parallel(ctx, idx, func(ctx context.Context, i int) error {
		u := users[i]
		if slices.Contains(remove, u) {
			m, rev, ok, err := s.deleteMember(ctx, typ, id, u)
			results[i] = result{c: memberChange{m, rev}, gone: true, wrote: ok}
			return err
		}
		existed := false
		in, adding := adds[u]
		m, rev, wrote, err := store.Update(ctx, s.st.Members, store.MemberKey(typ, id, u), func(m *model.Member, exists bool) error {
			existed = exists
			cur := *m
			if adding {
				if exists {
					// Adding a member again updates what is given of it.
					cur = in.update(cur, now)
				} else {
					cur = in.member(now)
				}
			}
			for _, role := range roleOf[u] {
				if !exists && !adding {
					return apierror.Input("user %s is not a member of channel %s:%s", u, typ, id)
				}
				cur = memberInput{UserID: u, ChannelRole: role}.update(cur, now)
			}
			if exists && cur.Same(*m) {
				return store.ErrUnchanged
			}
			*m = cur
			return nil
		})
		m.UserID = u
		results[i] = result{c: memberChange{m, rev}, added: !existed, wrote: wrote}
		return err
	})
	if err != nil {
		return nil, nil, nil, err
	}
	// In the order the call named them.
	order := map[string]int{}
	for _, u := range slices.Concat(memberIDsOf(add), roleIDs(roles), remove) {
		if _, ok := order[u]; !ok {
			order[u] = len(order)
		}
	}
	slices.SortStableFunc(idx, func(a, b int) int { return order[users[a]] - order[users[b]] })
	for _, i := range idx {
		switch r := results[i]; {
		case !r.wrote:
		case r.gone:
			removed = append(removed, r.c)
		case r.added:
			added = append(added, r.c)
		default:
			changed = append(changed, r.c)
		}
	}
	return added, removed, changed, nil
}

func memberIDsOf(ms []memberInput) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.UserID
	}
	return out
}

func roleIDs(rs []roleChange) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.UserID
	}
	return out
}

// deleteMember removes user's member key from channel typ:id; ok is false
// if there was none. m is the member as it was, rev the removal's lower
// bound (the revision it replaced + 1).
func (s *Server) deleteMember(ctx context.Context, typ, id, user string) (m model.Member, rev uint64, ok bool, err error) {
	key := store.MemberKey(typ, id, user)
	for {
		m, rev, err := store.Get[model.Member](ctx, s.st.Members, key)
		if errors.Is(err, store.ErrNotFound) {
			return m, 0, false, nil
		}
		if err != nil {
			return m, 0, false, err
		}
		err = s.st.Members.Delete(ctx, key, jetstream.LastRevision(rev))
		if store.IsConflict(err) {
			continue // changed meanwhile: read it again
		}
		if err != nil {
			return m, 0, false, err
		}
		m.UserID = user
		return m, rev + 1, true, nil
	}
}

// dropMembers deletes every member of the deleted channel typ:id and their
// memberships (the member first: a delete that dies half way leaves no
// member that presence is not routed for), writeParallel at a time. It
// returns how many there were.
func (s *Server) dropMembers(ctx context.Context, typ, id string) (int, error) {
	if err := s.idx.sync(ctx, store.BucketMembers); err != nil {
		return 0, err
	}
	cid := typ + ":" + id
	var users []string
	err := s.idx.view(func(tx *bolt.Tx) error {
		newMemberReader(tx).users(cid, func(u string) bool { users = append(users, u); return true })
		return nil
	})
	if err != nil {
		return 0, err
	}
	err = parallel(ctx, users, func(ctx context.Context, u string) error {
		if err := s.st.Members.Delete(ctx, store.MemberKey(typ, id, u)); err != nil {
			return fmt.Errorf("member %s of %s: %w", u, cid, err)
		}
		return s.removeMemberships(ctx, cid, []string{u})
	})
	return len(users), err
}

// addMemberships records cid in each user's memberships, which the worker
// reads (through pkg/route) to send a user's transitions to their channels.
func (s *Server) addMemberships(ctx context.Context, cid string, users []string) error {
	return parallel(ctx, users, func(ctx context.Context, u string) error {
		_, _, _, err := store.Update(ctx, s.st.Memberships, store.Key(u), func(ms *model.Memberships, _ bool) error {
			if slices.Contains(ms.CIDs, cid) {
				return store.ErrUnchanged
			}
			ms.CIDs = append(ms.CIDs, cid)
			return nil
		})
		if err != nil {
			return fmt.Errorf("memberships of %s: %w", u, err)
		}
		return nil
	})
}

func (s *Server) removeMemberships(ctx context.Context, cid string, users []string) error {
	return parallel(ctx, users, func(ctx context.Context, u string) error {
		_, _, _, err := store.Update(ctx, s.st.Memberships, store.Key(u), func(ms *model.Memberships, exists bool) error {
			i := slices.Index(ms.CIDs, cid)
			if !exists || i < 0 {
				return store.ErrUnchanged
			}
			ms.CIDs = slices.Delete(ms.CIDs, i, i+1)
			return nil
		})
		if err != nil {
			return fmt.Errorf("memberships of %s: %w", u, err)
		}
		return nil
	})
}
