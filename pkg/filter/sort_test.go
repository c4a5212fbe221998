package filter

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// sorted orders docs as the api does: by s, then by key (a user's id, a
// channel's cid), and returns the keys.
func sorted(docs map[string]Map, s Sort, key string) []string {
	list := make([]Map, 0, len(docs))
	for _, k := range all(docs) {
		list = append(list, docs[k])
	}
	slices.SortFunc(list, func(a, b Map) int {
		if c := s.Compare(a, b); c != 0 {
			return c
		}
		return strings.Compare(a[key].(string), b[key].(string))
	})
	out := make([]string, len(list))
	for i, d := range list {
		out[i] = d[key].(string)
	}
	return out
}

func mustSort(t *testing.T, raw string) Sort {
	t.Helper()
	s, err := ParseSort([]byte(raw))
	if err != nil {
		t.Fatalf("ParseSort(%s): %v", raw, err)
	}
	return s
}

func TestSortUsers(t *testing.T) {
	for _, tc := range []struct {
		name, sort string
		want       []string
	}{
		{"no sort leaves only the tie-break by id", `[]`, ids("ann", "bob", "cleo", "dan")},
		{"created_at ascending, Stream's default for users", `[{"field": "created_at", "direction": 1}]`, ids("ann", "bob", "cleo", "dan")},
		{"created_at descending sees fractional seconds", `[{"field": "created_at", "direction": -1}]`, ids("dan", "cleo", "bob", "ann")},
		{"a missing direction is ascending", `[{"field": "name"}]`, ids("ann", "bob", "dan", "cleo")},
		{"a direction of 1.0 is ascending", `[{"field": "age", "direction": 1.0}]`, ids("bob", "ann", "dan", "cleo")},
		{"ascending numbers put documents without the field last", `[{"field": "age", "direction": 1}]`, ids("bob", "ann", "dan", "cleo")},
		{"descending numbers still put documents without the field last", `[{"field": "age", "direction": -1}]`, ids("dan", "ann", "bob", "cleo")},
		{"descending times put documents without the field last", `[{"field": "last_active", "direction": -1}]`, ids("ann", "dan", "bob", "cleo")},
		{"an explicit null sorts like a missing field", `[{"field": "city", "direction": 1}]`, ids("ann", "dan", "bob", "cleo")},
		{"booleans order false before true", `[{"field": "online", "direction": 1}]`, ids("bob", "cleo", "ann", "dan")},
		{"ties on the first key are ordered by the second", `[{"field": "online", "direction": -1}, {"field": "created_at", "direction": -1}]`, ids("dan", "ann", "cleo", "bob")},
		{"three keys apply in order", `[{"field": "role", "direction": 1}, {"field": "city", "direction": -1}, {"field": "name", "direction": -1}]`, ids("bob", "dan", "ann", "cleo")},
		{"ties on every key fall back to the id", `[{"field": "role", "direction": 1}]`, ids("bob", "ann", "cleo", "dan")},
		{"a field no document holds leaves the tie-break", `[{"field": "nosuch", "direction": -1}]`, ids("ann", "bob", "cleo", "dan")},
		{"a custom field of mixed kinds orders numbers before strings", `[{"field": "score", "direction": 1}]`, ids("ann", "bob", "cleo", "dan")},
		{"arrays order element by element", `[{"field": "teams", "direction": 1}]`, ids("bob", "ann", "cleo", "dan")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := sorted(users, mustSort(t, tc.sort), "id"); !slices.Equal(got, tc.want) {
				t.Errorf("sort %s: got %v, want %v", tc.sort, got, tc.want)
			}
		})
	}
}

func TestSortChannels(t *testing.T) {
	for _, tc := range []struct {
		name, sort string
		want       []string
	}{
		{"last_updated descending, Stream's default for channels", `[{"field": "last_updated", "direction": -1}]`, ids("messaging:b", "team:c", "messaging:a")},
		{"last_message_at descending, as the SDK re-watches, puts channels without messages last", `[{"field": "last_message_at", "direction": -1}]`, ids("messaging:b", "messaging:a", "team:c")},
		{"member_count ascending", `[{"field": "member_count", "direction": 1}]`, ids("team:c", "messaging:b", "messaging:a")},
		{"type then created_at descending", `[{"field": "type", "direction": -1}, {"field": "created_at", "direction": -1}]`, ids("team:c", "messaging:b", "messaging:a")},
		{"ties break by cid", `[{"field": "frozen", "direction": 1}]`, ids("messaging:a", "team:c", "messaging:b")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := sorted(channels, mustSort(t, tc.sort), "cid"); !slices.Equal(got, tc.want) {
				t.Errorf("sort %s: got %v, want %v", tc.sort, got, tc.want)
			}
		})
	}
}

// TestPagesNeitherOverlapNorSkip: with many ties, cutting the sorted list
// into pages of every size gives each document exactly once.
func TestPagesNeitherOverlapNorSkip(t *testing.T) {
	docs := map[string]Map{}
	for i := range 57 {
		id := fmt.Sprintf("u%02d", (i*37)%57) // inserted out of order
		d := Map{"id": id, "created_at": t0.Add(time.Duration(i%4) * time.Second)}
		if i%3 != 0 {
			d["team"] = []string{"a", "b", "c"}[i%3]
		}
		docs[id] = d
	}
	s := mustSort(t, `[{"field": "team", "direction": -1}, {"field": "created_at", "direction": 1}]`)
	whole := sorted(docs, s, "id")
	for limit := 1; limit <= 30; limit++ {
		var paged []string
		for offset := 0; offset < len(docs); offset += limit {
			page := sorted(docs, s, "id")[offset:min(offset+limit, len(docs))]
			paged = append(paged, page...)
		}
		if !slices.Equal(paged, whole) {
			t.Fatalf("pages of %d: got %v, want %v", limit, paged, whole)
		}
	}
	seen := map[string]bool{}
	for _, id := range whole {
		if seen[id] {
			t.Fatalf("%s appears twice in %v", id, whole)
		}
		seen[id] = true
	}
}

func TestCompare(t *testing.T) {
	for _, tc := range []struct {
		name string
		a, b any
		want int
	}{
		{"null before a boolean", nil, false, -1},
		{"a boolean before a number", true, -5.0, -1},
		{"a number before a time", 1e12, t0, -1},
		{"a time before a string", t0, "2000-01-01T00:00:00Z", -1},
		{"a string before an array", "zzz", []any{}, -1},
		{"an array before an object", []any{"a"}, map[string]any{}, -1},
		{"numbers compare whatever their Go type", 3, 3.0, 0},
		{"int64 and float64", int64(2), 2.5, -1},
		{"strings compare byte-wise", "B", "a", -1},
		{"times compare as times across zones", t0, t0.In(time.FixedZone("x", 3600)), 0},
		{"a string is never read as a time", "2025-01-02T04:04:05+01:00", "2025-01-02T03:04:05Z", 1},
		{"arrays compare element by element", []any{"a", 2.0}, []any{"a", 10.0}, -1},
		{"a shorter array first when it is a prefix", []string{"a"}, []any{"a", "b"}, -1},
		{"[]string and []any compare alike", []string{"a", "b"}, []any{"a", "b"}, 0},
		{"objects compare key by key", map[string]any{"a": 1.0}, map[string]any{"a": 2.0}, -1},
		{"objects with fewer keys first", map[string]any{"a": 1.0}, map[string]any{"a": 1.0, "b": 0.0}, -1},
		{"objects with a smaller key first", map[string]any{"a": 9.0}, map[string]any{"b": 0.0}, -1},
		{"a *time.Time compares as its time", &t0, t0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Compare(tc.a, tc.b); got != tc.want {
				t.Errorf("Compare(%v, %v) = %d, want %d", tc.a, tc.b, got, tc.want)
			}
			if got := Compare(tc.b, tc.a); got != -tc.want {
				t.Errorf("Compare(%v, %v) = %d, want %d", tc.b, tc.a, got, -tc.want)
			}
		})
	}
}

func TestParseSort(t *testing.T) {
	for _, tc := range []struct {
		name, sort string
		want       Sort
	}{
		{"empty input is no sort", ``, nil},
		{"null is no sort", `null`, nil},
		{"an empty array is no sort", `[]`, nil},
		{"keys keep their order", `[{"field": "b", "direction": -1}, {"field": "a", "direction": 1}]`, Sort{{"b", -1}, {"a", 1}}},
		{"a missing direction is ascending", `[{"field": "name"}]`, Sort{{"name", 1}}},
		{"a custom field with spaces and dots", `[{"field": "favourite color.v2", "direction": -1}]`, Sort{{"favourite color.v2", -1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSort([]byte(tc.sort))
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("ParseSort(%s): got %v %v, want %v", tc.sort, got, err, tc.want)
			}
		})
	}
}

func TestParseSortErrors(t *testing.T) {
	eleven := "[" + strings.Repeat(`{"field": "a"},`, MaxSortFields) + `{"field": "a"}]`
	for _, tc := range []struct{ name, sort, want string }{
		{"a sort that is not JSON", `[{`, `sort is not valid JSON: syntax error at byte 2`},
		{"a sort that is one object", `{"field": "a", "direction": 1}`, `sort must be an array of {field, direction}`},
		{"a sort of numbers", `[1]`, `sort must be an array of {field, direction}`},
		{"a sort over 64 KiB", `[{"field": "` + strings.Repeat("a", MaxBytes) + `"}]`, `sort is larger than 65536 bytes`},
		{"more than 10 keys", eleven, `sort has more than 10 fields`},
		{"a missing field", `[{"direction": 1}]`, `sort field must be a string`},
		{"a numeric field", `[{"field": 1}]`, `sort field must be a string`},
		{"an empty field", `[{"field": ""}]`, `sort field must have 1 to 256 bytes`},
		{"a field over 256 bytes", `[{"field": "` + strings.Repeat("a", 257) + `"}]`, `sort field must have 1 to 256 bytes`},
		{"a field starting with $", `[{"field": "$gt"}]`, `sort field must be UTF-8 text not starting with $`},
		{"a field with a newline", `[{"field": "a\nb"}]`, `sort field must not hold control or invisible characters`},
		{"a direction of 2", `[{"field": "a", "direction": 2}]`, `sort direction of "a" must be 1 or -1`},
		{"a direction of 0", `[{"field": "a", "direction": 0}]`, `sort direction of "a" must be 1 or -1`},
		{"a direction spelled as text", `[{"field": "a", "direction": "desc"}]`, `sort direction of "a" must be 1 or -1`},
		{"a null direction", `[{"field": "a", "direction": null}]`, `sort direction of "a" must be 1 or -1`},
		{"an unknown key", `[{"field": "a", "x": 1}]`, `sort has unknown key "x"; it takes field and direction`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSort([]byte(tc.sort))
			if err == nil || !errors.Is(err, ErrInvalid) || err.Error() != tc.want {
				t.Errorf("ParseSort(%.60s):\n got %v\nwant %s", tc.sort, err, tc.want)
			}
		})
	}
}

// sign is for comparing results of Compare.
func sign(c int) int { return cmp.Compare(c, 0) }
