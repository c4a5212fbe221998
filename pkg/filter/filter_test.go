package filter

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

var docs = map[string]Map{
	"ann":  {"id": "ann", "age": 31.0, "online": true, "teams": []string{"red", "blue"}, "name": "Ann Lee", "last_active": t0},
	"bob":  {"id": "bob", "age": 25, "online": false, "color": "green", "last_active": t0.Add(time.Hour)},
	"cleo": {"id": "cleo", "online": false, "color": nil, "members": []any{"ann", "bob"}},
}

func matching(t *testing.T, f string) []string {
	t.Helper()
	flt, err := Parse([]byte(f))
	if err != nil {
		t.Fatalf("Parse(%s): %v", f, err)
	}
	var out []string
	for id, d := range docs {
		if flt.Match(d) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		name, filter string
		want         []string
	}{
		{"empty filter matches everything", `{}`, []string{"ann", "bob", "cleo"}},
		{"null filter matches everything", `null`, []string{"ann", "bob", "cleo"}},
		{"plain value is equality", `{"id": "bob"}`, []string{"bob"}},
		{"$eq on a boolean", `{"online": {"$eq": true}}`, []string{"ann"}},
		{"$in on ids", `{"id": {"$in": ["ann", "cleo", "zed"]}}`, []string{"ann", "cleo"}},
		{"$nin excludes", `{"id": {"$nin": ["ann"]}}`, []string{"bob", "cleo"}},
		{"$ne", `{"online": {"$ne": false}}`, []string{"ann"}},
		{"ints and floats compare as numbers", `{"age": 25}`, []string{"bob"}},
		{"$gt on numbers", `{"age": {"$gt": 26}}`, []string{"ann"}},
		{"$lte on numbers", `{"age": {"$lte": 31}}`, []string{"ann", "bob"}},
		{"time against an RFC 3339 string", `{"last_active": {"$gt": "2025-01-02T03:30:00Z"}}`, []string{"bob"}},
		{"time equality", `{"last_active": "2025-01-02T03:04:05Z"}`, []string{"ann"}},
		{"array field matches any element", `{"teams": "blue"}`, []string{"ann"}},
		{"$in on an array field", `{"members": {"$in": ["bob", "x"]}}`, []string{"cleo"}},
		{"$contains", `{"teams": {"$contains": "red"}}`, []string{"ann"}},
		{"null matches missing and null", `{"color": null}`, []string{"ann", "cleo"}},
		{"$exists true", `{"color": {"$exists": true}}`, []string{"bob", "cleo"}},
		{"$exists false", `{"age": {"$exists": false}}`, []string{"cleo"}},
		{"$autocomplete matches a word prefix", `{"name": {"$autocomplete": "le"}}`, []string{"ann"}},
		{"$or", `{"$or": [{"id": "ann"}, {"color": "green"}]}`, []string{"ann", "bob"}},
		{"$and", `{"$and": [{"online": false}, {"age": {"$exists": true}}]}`, []string{"bob"}},
		{"$nor", `{"$nor": [{"id": "ann"}]}`, []string{"bob", "cleo"}},
		{"two operators on one field both hold", `{"age": {"$gt": 20, "$lt": 30}}`, []string{"bob"}},
		{"different kinds never compare", `{"age": {"$gt": "a"}}`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := matching(t, tc.filter); !slices.Equal(got, tc.want) {
				t.Errorf("filter %s: got %v, want %v", tc.filter, got, tc.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ name, filter, want string }{
		{"unknown field operator", `{"id": {"$nosuchop": 1}}`, "unknown operator $nosuchop"},
		{"unknown top-level operator", `{"$xor": []}`, "unknown operator $xor"},
		{"plain array", `{"id": ["a"]}`, "use $in"},
		{"$in needs an array", `{"id": {"$in": "a"}}`, "$in needs an array"},
		{"object value", `{"id": {"a": 1}}`, "not an operator"},
		{"not an object", `[1]`, "must be an object"},
		{"bad JSON", `{`, "not valid JSON"},
		{"$or of non-objects", `{"$or": [1]}`, "array of filters"},
		{"empty $or", `{"$or": []}`, "non-empty array"},
		{"$exists needs a boolean", `{"a": {"$exists": 1}}`, "$exists"},
		{"too deep", strings.Repeat(`{"$and": [`, 12) + `{}` + strings.Repeat(`]}`, 12), "nested deeper"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.filter))
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse(%s): got %v, want an ErrInvalid naming %q", tc.filter, err, tc.want)
			}
		})
	}
}

func TestValues(t *testing.T) {
	for _, tc := range []struct {
		filter string
		want   []any
		ok     bool
	}{
		{`{"id": "a"}`, []any{"a"}, true},
		{`{"id": {"$in": ["a", "b"]}, "x": 1}`, []any{"a", "b"}, true},
		{`{"$and": [{"id": {"$in": ["a"]}}]}`, []any{"a"}, true},
		{`{"$or": [{"id": "a"}]}`, nil, false},
		{`{"name": "a"}`, nil, false},
	} {
		f, err := Parse([]byte(tc.filter))
		if err != nil {
			t.Fatal(err)
		}
		got, ok := f.Values("id")
		if ok != tc.ok || !slices.Equal(got, tc.want) {
			t.Errorf("Values(id) of %s: got %v %v, want %v %v", tc.filter, got, ok, tc.want, tc.ok)
		}
	}
}

func TestSort(t *testing.T) {
	list := []Map{docs["ann"], docs["bob"], docs["cleo"]}
	for _, tc := range []struct {
		name, sort string
		want       []string
	}{
		{"ascending number, missing last", `[{"field": "age", "direction": 1}]`, []string{"bob", "ann", "cleo"}},
		{"descending number, missing still last", `[{"field": "age", "direction": -1}]`, []string{"ann", "bob", "cleo"}},
		{"descending time", `[{"field": "last_active", "direction": -1}]`, []string{"bob", "ann", "cleo"}},
		{"booleans then ties by the next field", `[{"field": "online", "direction": -1}, {"field": "id", "direction": -1}]`, []string{"ann", "cleo", "bob"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ParseSort([]byte(tc.sort))
			if err != nil {
				t.Fatal(err)
			}
			got := slices.Clone(list)
			slices.SortStableFunc(got, func(a, b Map) int { return s.Compare(a, b) })
			var ids []string
			for _, d := range got {
				ids = append(ids, d["id"].(string))
			}
			if !slices.Equal(ids, tc.want) {
				t.Errorf("sort %s: got %v, want %v", tc.sort, ids, tc.want)
			}
		})
	}
}

func TestParseSortErrors(t *testing.T) {
	for _, s := range []string{`{"field": "a"}`, `[{"field": ""}]`, `[{"field": "a", "direction": 2}]`, `[1]`, `[{"field": "a", "x": 1}]`} {
		if _, err := ParseSort([]byte(s)); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseSort(%s): got %v, want ErrInvalid", s, err)
		}
	}
}

// FuzzParse: no input makes parsing, matching or sorting panic.
func FuzzParse(f *testing.F) {
	for _, s := range []string{`{}`, `{"id": {"$in": ["a", 1, null]}}`, `{"$or": [{"a": {"$gt": 1}}, {"b": {"$autocomplete": "x"}}]}`,
		`{"a": {"$exists": true, "$ne": null}}`, `[{"field": "a", "direction": -1}]`, `{"a": {"$contains": "x"}}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		flt, err := Parse([]byte(s))
		if err == nil {
			for _, d := range docs {
				flt.Match(d)
			}
			flt.Values("id")
		}
		if srt, err := ParseSort([]byte(s)); err == nil {
			srt.Compare(docs["ann"], docs["cleo"])
		}
	})
}
