package filter

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"
)

// fuzzDocs are the fixed documents every fuzzed filter and sort runs on, plus
// what the fuzzer makes of its second input.
func fuzzDocs(raw string) []Map {
	var out []Map
	for _, k := range all(users) {
		out = append(out, users[k])
	}
	for _, k := range all(channels) {
		out = append(out, channels[k])
	}
	var v any
	if json.Unmarshal([]byte(raw), &v) != nil {
		return out
	}
	list, ok := v.([]any)
	if !ok {
		list = []any{v}
	}
	for _, e := range list[:min(len(list), 8)] {
		if m, ok := e.(map[string]any); ok {
			out = append(out, asDoc(m))
		}
	}
	return out
}

// asDoc turns decoded JSON into a document as the api builds one: the known
// time fields hold time.Time when they parse.
func asDoc(m map[string]any) Map {
	d := Map(m)
	for _, k := range []string{"created_at", "updated_at", "last_active", "last_message_at", "last_updated"} {
		if t, ok := asTime(d[k]); ok {
			d[k] = t
		}
	}
	return d
}

var fuzzSchemas = []Schema{nil, Users, Channels}

// FuzzParseFilter: no input makes parsing or matching panic; errors always
// wrap ErrInvalid; a parsed filter matches deterministically; $nor negates,
// $or of one filter and $and of a filter with itself change nothing; Values
// never leaves out a document the filter matches.
func FuzzParseFilter(f *testing.F) {
	for _, seed := range []struct{ filter, doc string }{
		{`{}`, `{}`},
		{`{"id": {"$in": ["ann", "bob"]}}`, `{"id": "ann"}`},
		{`{"cid": {"$in": ["messaging:a", "messaging:b"]}}`, `{"cid": "messaging:a", "members": ["ann"]}`},
		{`{"members": {"$in": ["ann"]}, "color": "green"}`, `{"members": ["ann", "bob"], "color": "green"}`},
		{`{"$or": [{"id": {"$autocomplete": "an"}}, {"name": {"$autocomplete": "an"}}]}`, `{"id": "x", "name": "Ann Lee"}`},
		{`{"$or": [{"name": {"$autocomplete": ""}}, {"id": {"$eq": ""}}]}`, `{"name": ""}`},
		{`{"last_active": {"$gt": "2025-01-02T03:04:05.123Z"}, "online": true}`, `{"last_active": "2025-01-02T04:04:05+01:00", "online": true}`},
		{`{"created_at": {"$gte": "2025-01-02T03:04:05Z", "$lt": "2025-01-03T00:00:00.5Z"}}`, `{"created_at": "2025-01-02T03:04:05.000Z"}`},
		{`{"age": {"$gt": 20, "$lte": 31}, "city": {"$nin": ["Rome", null]}}`, `{"age": 31, "city": null}`},
		{`{"teams": {"$contains": "red"}, "invisible": {"$ne": true}}`, `{"teams": ["red"], "invisible": false}`},
		{`{"member_count": {"$gte": 2}, "frozen": false}`, `{"member_count": 2, "frozen": false}`},
		{`{"a": {"$exists": true, "$ne": null}, "b": {"$exists": false}}`, `{"a": 1}`},
		{`{"$nor": [{"$and": [{"x": 1}, {"$or": [{"y": "1"}, {"z": true}]}]}]}`, `[{"x": 1, "z": true}, {"x": "1"}]`},
		{`{"id": {"$in": []}}`, `{}`},
		{`{"id": {"$nosuchop": 1}}`, `{}`},
		{nested(10, `{"id": "a"}`), `{"id": "a"}`},
		{`{"tags": {"$in": [1, "1", true, null]}}`, `{"tags": [1, {"a": []}, null]}`},
	} {
		f.Add(seed.filter, seed.doc)
	}
	f.Fuzz(func(t *testing.T, filter, doc string) {
		docs := fuzzDocs(doc)
		for _, schema := range fuzzSchemas {
			flt, err := Parse([]byte(filter), WithSchema(schema))
			_, err2 := Parse([]byte(filter), WithSchema(schema))
			if (err == nil) != (err2 == nil) || err != nil && err.Error() != err2.Error() {
				t.Fatalf("Parse(%q) is not deterministic: %v, then %v", filter, err, err2)
			}
			if err != nil {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("Parse(%q): error %v does not wrap ErrInvalid", filter, err)
				}
				continue
			}
			wrap := func(format string) (Filter, bool) {
				g, err := Parse([]byte(sprintf(format, filter)), WithSchema(schema))
				return g, err == nil
			}
			nor, norOK := wrap(`{"$nor": [%s]}`)
			or, orOK := wrap(`{"$or": [%s]}`)
			and, andOK := wrap(`{"$and": [%s, %s]}`)
			vals, pinned := flt.Values("id")
			for _, d := range docs {
				m := flt.Match(d)
				if flt.Match(d) != m {
					t.Fatalf("filter %q matched %v one way, then the other", filter, d)
				}
				if norOK && nor.Match(d) == m {
					t.Fatalf("$nor of %q matched %v as the filter did (%v)", filter, d, m)
				}
				if orOK && or.Match(d) != m {
					t.Fatalf("$or of %q alone matched %v differently", filter, d)
				}
				if andOK && and.Match(d) != m {
					t.Fatalf("$and of %q with itself matched %v differently", filter, d)
				}
				if m && pinned {
					id, _ := d.Field("id")
					if !slices.ContainsFunc(vals, func(v any) bool { return anyElem(normalize(id), func(x any) bool { return equal(x, v) }) }) {
						t.Fatalf("filter %q matched %v but Values(id) = %v leaves it out", filter, d, vals)
					}
				}
			}
		}
	})
}

// sprintf fills each %s of format with s; the filter text may hold % signs.
func sprintf(format, s string) string {
	out := []byte{}
	for i := 0; i < len(format); i++ {
		if format[i] == '%' && i+1 < len(format) && format[i+1] == 's' {
			out = append(out, s...)
			i++
			continue
		}
		out = append(out, format[i])
	}
	return string(out)
}

// FuzzSort: no input makes parsing or sorting panic; errors always wrap
// ErrInvalid; Sort.Compare and Compare are total orders on the documents
// and their values: reflexive, antisymmetric and transitive, so a sorted
// list is in order pair by pair.
func FuzzSort(f *testing.F) {
	for _, seed := range []struct{ sort, docs string }{
		{`[]`, `[]`},
		{`[{"field": "last_active", "direction": -1}]`, `[{"id": "x", "last_active": "2025-01-02T03:04:05Z"}, {"id": "y"}]`},
		{`[{"field": "last_message_at", "direction": -1}]`, `[{"cid": "messaging:x", "last_message_at": "2025-01-02T03:04:05.5Z"}]`},
		{`[{"field": "name", "direction": 1}, {"field": "id", "direction": 1}]`, `[{"id": "a", "name": "Zed"}, {"id": "b", "name": "zed"}, {"id": "c", "name": null}]`},
		{`[{"field": "created_at"}]`, `[{"created_at": "not a date"}, {"created_at": 5}]`},
		{`[{"field": "score", "direction": -1}, {"field": "created_at", "direction": 1}]`, `[{"score": "7"}, {"score": 7}, {"score": [7]}, {"score": {"v": 7}}, {"score": true}]`},
		{`[{"field": "tags", "direction": 1}]`, `[{"tags": [1, "a"]}, {"tags": ["a", 1]}, {"tags": []}, {"tags": [[], {}]}]`},
		{`[{"field": "member_count", "direction": -1}]`, `[{"member_count": 1e308}, {"member_count": -0}, {"member_count": 0}]`},
		{`[{"field": "a", "direction": 2}]`, `[]`},
		{`{"field": "a"}`, `{}`},
	} {
		f.Add(seed.sort, seed.docs)
	}
	f.Fuzz(func(t *testing.T, sortJSON, docsJSON string) {
		s, err := ParseSort([]byte(sortJSON))
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("ParseSort(%q): error %v does not wrap ErrInvalid", sortJSON, err)
			}
			return
		}
		docs := fuzzDocs(docsJSON)
		order := func(name string, n int, cmp func(i, j int) int) {
			for i := range n {
				if c := cmp(i, i); c != 0 {
					t.Fatalf("%s: element %d compares %d with itself", name, i, c)
				}
				for j := range n {
					cij, cji := sign(cmp(i, j)), sign(cmp(j, i))
					if cij != -cji {
						t.Fatalf("%s: %d vs %d is %d but %d vs %d is %d", name, i, j, cij, j, i, cji)
					}
					for k := range n {
						if cij <= 0 && cmp(j, k) <= 0 && cmp(i, k) > 0 {
							t.Fatalf("%s: %d <= %d <= %d but %d > %d", name, i, j, k, i, k)
						}
					}
				}
			}
		}
		order("Sort.Compare of documents", len(docs), func(i, j int) int { return s.Compare(docs[i], docs[j]) })
		var vals []any
		for _, d := range docs {
			for _, k := range s {
				if v, ok := d[k.Field]; ok {
					vals = append(vals, v)
				}
			}
		}
		order("Compare of values", len(vals), func(i, j int) int { return Compare(vals[i], vals[j]) })

		sortedDocs := slices.Clone(docs)
		slices.SortStableFunc(sortedDocs, func(a, b Map) int { return s.Compare(a, b) })
		for i := 1; i < len(sortedDocs); i++ {
			if s.Compare(sortedDocs[i-1], sortedDocs[i]) > 0 {
				t.Fatalf("sorted documents %d and %d are out of order", i-1, i)
			}
		}
	})
}
