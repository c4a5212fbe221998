package api

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/presencehq/presence/pkg/apierror"
	"github.com/presencehq/presence/pkg/filter"
	bolt "go.etcd.io/bbolt"
)

// scanMembers is a members query answered without the planner: every member
// of cid loaded, matched and paged.
func scanMembers(tx *bolt.Tx, cid string, p parsed, load func(string) (filter.Map, bool)) []string {
	var hits []hit
	newMemberReader(tx).users(cid, func(u string) bool {
		if doc, ok := load(u); ok {
			hits = append(hits, hit{key: u, doc: doc})
		}
		return true
	})
	return hitKeys(p.page(hits))
}

func randomMemberQuery(r *rand.Rand, users []string) (string, string) {
	pick := func() string { return users[r.IntN(len(users))] }
	at := func() string {
		return time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(r.IntN(50)) * time.Minute).Format(time.RFC3339)
	}
	conds := []func() string{
		func() string { return `"online": true` },
		func() string { return `"online": false` },
		func() string { return `"user.online": {"$in": [true]}` },
		func() string {
			return fmt.Sprintf(`"name": {"$autocomplete": %q}`, firstRune(testWords[r.IntN(len(testWords))]))
		},
		func() string {
			return fmt.Sprintf(`"user.name": {"$autocomplete": %q}`, testWords[r.IntN(len(testWords))])
		},
		func() string { return fmt.Sprintf(`"id": {"$in": [%q, %q, %q]}`, pick(), pick(), pick()) },
		func() string { return fmt.Sprintf(`"user_id": %q`, pick()) },
		func() string {
			return fmt.Sprintf(`"user_id": {%q: %q}`, []string{"$gt", "$gte", "$lt", "$lte"}[r.IntN(4)], pick())
		},
		func() string {
			return fmt.Sprintf(`"created_at": {%q: %q}`, []string{"$gt", "$gte", "$lt", "$lte"}[r.IntN(4)], at())
		},
		func() string {
			return fmt.Sprintf(`"channel_role": %q`, []string{roleMember, roleModerator}[r.IntN(2)])
		},
		func() string { return fmt.Sprintf(`"code": %q`, []string{"006", "007"}[r.IntN(2)]) },
		func() string {
			return fmt.Sprintf(`"user.role": %q`, []string{"user", "admin", "moderator"}[r.IntN(3)])
		},
		func() string {
			return fmt.Sprintf(`"user.teams": {"$contains": %q}`, []string{"red", "blue", "green"}[r.IntN(3)])
		},
		func() string { return `"$or": [{"online": true}, {"channel_role": "channel_moderator"}]` },
		func() string { return `"last_active": {"$exists": true}` },
	}
	var parts []string
	for range r.IntN(3) {
		parts = append(parts, conds[r.IntN(len(conds))]())
	}
	if r.IntN(4) == 0 {
		// Who is online now, most recently active first: the query a
		// presence app asks most.
		parts = append(parts, []string{`"online": true`, `"user.online": true`}[r.IntN(2)])
		return "{" + strings.Join(parts, ", ") + "}", []string{`[{"field": "last_active", "direction": -1}]`, `[{"field": "last_active"}]`,
			`[{"field": "user.last_active", "direction": -1}, {"field": "user_id", "direction": -1}]`}[r.IntN(3)]
	}
	sorts := []string{``, `[{"field": "created_at", "direction": -1}]`, `[{"field": "user_id"}]`, `[{"field": "user_id", "direction": -1}]`,
		`[{"field": "id", "direction": -1}]`, `[{"field": "last_active", "direction": -1}]`, `[{"field": "last_active"}]`,
		`[{"field": "user.created_at", "direction": -1}]`, `[{"field": "name"}]`, `[{"field": "updated_at", "direction": -1}]`,
		`[{"field": "last_active", "direction": -1}, {"field": "name"}]`, `[{"field": "created_at"}, {"field": "user_id", "direction": -1}]`}
	return "{" + strings.Join(parts, ", ") + "}", sorts[r.IntN(len(sorts))]
}

// TestMemberQueriesAnswerLikeAFullScan runs random members queries through
// every plan findMembers has and compares each page with a scan of every
// member of the channel: big and small channels, members whose user is
// gone, custom member fields named as user fields, cursors.
func TestMemberQueriesAnswerLikeAFullScan(t *testing.T) {
	m := newMemIndex(t)
	r := rand.New(rand.NewPCG(7, 3))
	users, cids := randomData(m, r, 150, 30)
	defer func(l int, plan string) { loadCost, memberPlan = l, plan }(loadCost, memberPlan)
	for _, plan := range []struct {
		name, force string
		load        int
	}{
		{"priced", "", loadCost}, {"priced, cheap loads", "", 1}, {"fetch", "fetch", loadCost},
		{"the channel's own order", "own", loadCost}, {"a users sort index", "users", loadCost},
	} {
		loadCost, memberPlan = plan.load, plan.force
		for i := range 150 {
			cid := cids[0] // most users are members
			if i%3 == 2 {
				cid = cids[r.IntN(len(cids))]
			}
			cl := []caller{{server: true}, {user: users[r.IntN(len(users))]}}[i%2]
			f, s := randomMemberQuery(r, users)
			limit, offset := 1+r.IntN(30), []int{0, 0, 1, 5, 40}[r.IntN(5)]
			p := parseQuery(t, "QueryMembers", f, s, limit, offset)
			_ = m.view(func(tx *bolt.Tx) error {
				load := memberLoader(tx, p, cl, cid, nil)
				got := hitKeys(p.findMembers(tx, cid, load))
				want := scanMembers(tx, cid, p, load)
				if !slices.Equal(got, want) {
					t.Errorf("%s: members of %s filter %s sort %s limit %d offset %d as %+v:\n got %v\nwant %v", plan.name, cid, f, s, limit, offset, cl, got, want)
				}
				return nil
			})
		}
	}
}

// TestMemberCursorsPageThroughAChannel: pages by user_id_gt and by
// created_at cursors (conditions the walk seeks to) cover every member once.
func TestMemberCursorsPageThroughAChannel(t *testing.T) {
	m := newMemIndex(t)
	users, cids := randomData(m, rand.New(rand.NewPCG(1, 1)), 150, 5)
	_ = users
	cid := cids[0]
	var all []string
	_ = m.view(func(tx *bolt.Tx) error {
		newMemberReader(tx).users(cid, func(u string) bool { all = append(all, u); return true })
		return nil
	})
	if len(all) < 50 {
		t.Fatalf("the channel has %d members, want a big one", len(all))
	}
	var got []string
	last := ""
	for {
		f := `{}`
		if last != "" {
			f = fmt.Sprintf(`{"user_id": {"$gt": %q}}`, last)
		}
		p := parseQuery(t, "QueryMembers", f, `[{"field": "user_id"}]`, 7, 0)
		var page []string
		_ = m.view(func(tx *bolt.Tx) error {
			page = hitKeys(p.findMembers(tx, cid, memberLoader(tx, p, caller{server: true}, cid, nil)))
			return nil
		})
		if len(page) == 0 {
			break
		}
		got = append(got, page...)
		last = page[len(page)-1]
	}
	if !slices.Equal(got, all) {
		t.Errorf("paging by user_id_gt: got %d members %v, want %d %v", len(got), got, len(all), all)
	}
}

// FuzzQueryMembers: a filter and a sort, as a members query of any caller
// on a channel of the data of TestMemberQueriesAnswerLikeAFullScan,
// answered through each of findMembers' plans, give the page a scan of
// every member gives. The planner reads conditions and cursor bounds from
// the filter on its own (conjuncts); where it reads one the filter does not
// hold, the pages differ.
func FuzzQueryMembers(f *testing.F) {
	m := newMemIndex(f)
	r := rand.New(rand.NewPCG(7, 3))
	users, cids := randomData(m, r, 150, 30)
	for i := range 30 {
		fl, s := randomMemberQuery(r, users)
		f.Add(fl, s, uint8(i), uint8(r.IntN(256)))
	}
	f.Add(`{"user_id": {"$gt": "u050", "$lte": "u090"}, "created_at": {"$gte": "2025-01-01T00:10:00Z"}}`, `[{"field": "created_at", "direction": -1}]`, uint8(1), uint8(8))
	f.Add(`{"$and": [{"online": true}, {"id": {"$gt": 5}}]}`, `[{"field": "last_active", "direction": -1}]`, uint8(2), uint8(0))
	f.Add(`{"user_id": {"$lt": null}, "name": {"$autocomplete": ""}}`, `[{"field": "user_id", "direction": -1}]`, uint8(0), uint8(3))
	defer func(l int, plan string) { loadCost, memberPlan = l, plan }(loadCost, memberPlan)
	f.Fuzz(func(t *testing.T, filterJSON, sortJSON string, who, page uint8) {
		limit, offset := 1+int(page%8)*4, []int{0, 0, 1, 5, 40}[int(page/8)%5]
		q := query{Filter: json.RawMessage(filterJSON), Sort: json.RawMessage(sortJSON), Limit: &limit, Offset: &offset}
		p, err := q.parse("QueryMembers", DefaultMemberLimit, MaxMemberLimit)
		if err != nil {
			sdkError(t, "QueryMembers", err, apierror.CodeInput)
			return
		}
		if len(p.sort) == 0 {
			p.sort = defaultMemberSort
		}
		cl := caller{server: true}
		if who%4 != 0 {
			cl = caller{user: users[int(who)%len(users)]}
		}
		cid := cids[int(page/64)%len(cids)]
		for _, plan := range []string{"", "fetch", "own", "users"} {
			memberPlan = plan
			_ = m.view(func(tx *bolt.Tx) error {
				load := memberLoader(tx, p, cl, cid, nil)
				got := hitKeys(p.findMembers(tx, cid, load))
				if want := scanMembers(tx, cid, p, load); !slices.Equal(got, want) {
					t.Fatalf("members of %s filter %s sort %s limit %d offset %d as %+v, plan %q:\n got %v\nwant %v", cid, filterJSON, sortJSON, limit, offset, cl, plan, got, want)
				}
				return nil
			})
		}
	})
}
