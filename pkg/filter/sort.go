package filter

import (
	"cmp"
	"encoding/json"
	"strings"
	"time"
)

// SortField is one sort key; Direction is 1 (ascending) or -1 (descending).
type SortField struct {
	Field     string `json:"field"`
	Direction int    `json:"direction"`
}

// Sort orders documents by its fields in turn. Callers break the remaining
// ties by a unique key (a user's id, a channel's cid) so that pages neither
// overlap nor skip.
//
// Any valid field name is a sort key, known or not: Stream sorts on custom
// fields too, and documents without the field sort last.
type Sort []SortField

// ParseSort parses the SDK's sort: [{"field": "...", "direction": 1|-1}].
// Empty input, null and [] give no sort. A missing direction is ascending.
func ParseSort(raw []byte) (Sort, error) {
	if len(raw) > MaxBytes {
		return nil, errorf("sort is larger than %d bytes", MaxBytes)
	}
	if len(strings.TrimSpace(string(raw))) == 0 {
		return nil, nil
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, errorf("sort is not valid JSON: %s", jsonError(err))
	}
	return SortFromValue(v)
}

// SortFromValue parses a sort already decoded from JSON.
func SortFromValue(v any) (Sort, error) {
	if v == nil {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, errorf("sort must be an array of {field, direction}")
	}
	if len(list) > MaxSortFields {
		return nil, errorf("sort has more than %d fields", MaxSortFields)
	}
	var out Sort
	for _, e := range list {
		m, ok := e.(map[string]any)
		if !ok {
			return nil, errorf("sort must be an array of {field, direction}")
		}
		for _, k := range sortedKeys(m) {
			if k != "field" && k != "direction" {
				return nil, errorf("sort has unknown key %q; it takes field and direction", k)
			}
		}
		f, ok := m["field"].(string)
		if !ok {
			return nil, errorf("sort field must be a string")
		}
		if err := checkName("sort field", f); err != nil {
			return nil, err
		}
		dir := 1
		if d, present := m["direction"]; present {
			n, ok := AsNumber(d)
			switch {
			case ok && n == 1:
				dir = 1
			case ok && n == -1:
				dir = -1
			default:
				return nil, errorf("sort direction of %q must be 1 or -1", f)
			}
		}
		out = append(out, SortField{Field: f, Direction: dir})
	}
	return out, nil
}

// Compare orders a and b by s: negative when a comes first. A missing (or
// null) value sorts last in either direction, so "most recent first" never
// starts with documents that have no date.
func (s Sort) Compare(a, b Doc) int {
	for _, f := range s {
		x, okA := a.Field(f.Field)
		y, okB := b.Field(f.Field)
		x, y = normalize(x), normalize(y)
		okA = okA && x != nil
		okB = okB && y != nil
		switch {
		case !okA && !okB:
			continue
		case !okA:
			return 1
		case !okB:
			return -1
		}
		if c := Compare(x, y); c != 0 {
			return c * f.Direction
		}
	}
	return 0
}

// Compare is a total order over document values: values of one kind compare
// naturally (strings byte-wise, arrays element by element, objects key by
// key); different kinds order as null < boolean < number < time < string <
// array < object < anything else. A string never compares as a time here:
// it would make the order intransitive.
func Compare(a, b any) int {
	a, b = normalize(a), normalize(b)
	ra, rb := rank(a), rank(b)
	if ra != rb {
		return cmp.Compare(ra, rb)
	}
	switch ra {
	case rankBool:
		return cmpBool(a.(bool), b.(bool))
	case rankNumber:
		x, _ := AsNumber(a)
		y, _ := AsNumber(b)
		return cmp.Compare(x, y)
	case rankTime:
		return a.(time.Time).Compare(b.(time.Time))
	case rankString:
		return strings.Compare(a.(string), b.(string))
	case rankArray:
		x, y := list(a), list(b)
		for i := 0; i < len(x) && i < len(y); i++ {
			if c := Compare(x[i], y[i]); c != 0 {
				return c
			}
		}
		return cmp.Compare(len(x), len(y))
	case rankObject:
		x, y := a.(map[string]any), b.(map[string]any)
		kx, ky := sortedKeys(x), sortedKeys(y)
		for i := 0; i < len(kx) && i < len(ky); i++ {
			if c := strings.Compare(kx[i], ky[i]); c != 0 {
				return c
			}
			if c := Compare(x[kx[i]], y[ky[i]]); c != 0 {
				return c
			}
		}
		return cmp.Compare(len(kx), len(ky))
	}
	return 0
}

const (
	rankNull = iota
	rankBool
	rankNumber
	rankTime
	rankString
	rankArray
	rankObject
	rankOther
)

func rank(v any) int {
	switch v.(type) {
	case nil:
		return rankNull
	case bool:
		return rankBool
	case time.Time:
		return rankTime
	case string:
		return rankString
	case []any, []string:
		return rankArray
	case map[string]any:
		return rankObject
	}
	if _, ok := AsNumber(v); ok {
		return rankNumber
	}
	return rankOther
}

func list(v any) []any {
	if s, ok := v.([]string); ok {
		out := make([]any, len(s))
		for i, e := range s {
			out[i] = e
		}
		return out
	}
	return v.([]any)
}
