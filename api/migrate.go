package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	bolt "go.etcd.io/bbolt"

	"github.com/presencehq/presence/pkg/model"
	"github.com/presencehq/presence/pkg/store"
	"github.com/presencehq/presence/pkg/subject"
)

// Channels written before members had keys of their own hold their members
// in the channel's value (model.Channel.Inline). Each api node moves them
// to presence_members when it starts, before it serves: every member is
// created unless it exists already, then the list is dropped from the value
// with compare-and-set. Nodes starting together may do it at once; the one
// whose compare-and-set fails finds the list gone when it reads again. Their
// memberships were kept by the code that wrote them. The channels to move
// are found in the index, already caught up, in milliseconds: a scan of the
// stored values for an inline member, nothing decoded unless it has one.
//
// Nodes of the older code must not run beside it: they would read channels
// without members.
func (s *Server) migrateInlineMembers(ctx context.Context) error {
	var keys []string
	err := s.idx.view(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(store.BucketChannels)).ForEach(func(k, v []byte) error {
			if bytes.Contains(v, []byte(`"members":[{`)) {
				keys = append(keys, string(k))
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("api: inline members: %w", err)
	}
	moved := 0
	for _, key := range keys {
		n, err := s.moveInlineMembers(ctx, key)
		if err != nil {
			return fmt.Errorf("api: inline members of %s: %w", store.ChannelCID(key), err)
		}
		moved += n
	}
	if moved > 0 {
		s.log.Info("moved inline members to their own keys", "channels", len(keys), "members", moved)
	}
	return nil
}

// moveInlineMembers moves the inline members of the channel stored under
// key, if it still has any, and says how many.
func (s *Server) moveInlineMembers(ctx context.Context, key string) (int, error) {
	for {
		e, err := s.st.Channels.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
		var ch model.Channel
		if err := json.Unmarshal(e.Value(), &ch); err != nil {
			return 0, err
		}
		if len(ch.Inline) == 0 {
			return 0, nil // moved by another node
		}
		if subject.CheckChannelType(ch.Type) != nil || subject.CheckChannelID(ch.ID) != nil || store.ChannelKey(ch.Type, ch.ID) != key {
			return 0, fmt.Errorf("the value names channel %q:%q", ch.Type, ch.ID)
		}
		var members []model.Member
		for _, m := range ch.Inline {
			if err := subject.CheckUserID(m.UserID); err != nil {
				s.log.Warn("dropping an inline member with an invalid id", "cid", ch.CID(), "err", err)
				continue
			}
			members = append(members, m)
		}
		err = parallel(ctx, members, func(ctx context.Context, m model.Member) error {
			_, _, _, err := store.Update(ctx, s.st.Members, store.MemberKey(ch.Type, ch.ID, m.UserID), func(v *model.Member, exists bool) error {
				if exists {
					return store.ErrUnchanged
				}
				*v = m
				return nil
			})
			return err
		})
		if err != nil {
			return 0, err
		}
		ch.Inline = nil
		b, err := json.Marshal(ch)
		if err != nil {
			return 0, err
		}
		if _, err = s.st.Channels.Update(ctx, key, b, e.Revision()); store.IsConflict(err) {
			continue // changed meanwhile: read it again
		}
		return len(members), err
	}
}
