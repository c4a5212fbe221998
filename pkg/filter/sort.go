package filter

import (
	"encoding/json"
	"strings"
	"time"
)

// SortField is one sort key; Direction is 1 (ascending) or -1 (descending).
type SortField struct {
	Field     string `json:"field"`
	Direction int    `json:"direction"`
}

// Sort orders documents by its fields in turn. Callers append their own
// tie-breaker (the id) so pages are stable.
type Sort []SortField

// ParseSort parses the SDK's sort: [{"field": "...", "direction": 1|-1}].
// Empty input and null give no sort. A missing direction is ascending.
func ParseSort(raw []byte) (Sort, error) {
	if len(strings.TrimSpace(string(raw))) == 0 {
		return nil, nil
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, errorf("sort is not valid JSON: %v", err)
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
		f, ok := m["field"].(string)
		if !ok || f == "" || len(f) > MaxFieldLen {
			return nil, errorf("sort field must be a string of 1 to %d characters", MaxFieldLen)
		}
		dir := 1
		if d, present := m["direction"]; present && d != nil {
			n, ok := number(d)
			switch {
			case ok && n == 1:
				dir = 1
			case ok && n == -1:
				dir = -1
			default:
				return nil, errorf("sort direction of %s must be 1 or -1", f)
			}
		}
		for k := range m {
			if k != "field" && k != "direction" {
				return nil, errorf("sort has unknown key %q", k)
			}
		}
		out = append(out, SortField{Field: f, Direction: dir})
	}
	return out, nil
}

// Compare orders a and b by s: negative when a comes first. A missing (or
// null) value sorts last in either direction.
func (s Sort) Compare(a, b Doc) int {
	for _, f := range s {
		x, okA := a.Field(f.Field)
		y, okB := b.Field(f.Field)
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
		if c := Compare(normalize(x), normalize(y)); c != 0 {
			return c * f.Direction
		}
	}
	return 0
}

// Compare is a total order over document values: values of one kind compare
// naturally; different kinds order as null < boolean < number < time <
// string < array < anything else.
func Compare(a, b any) int {
	ra, rb := rank(a), rank(b)
	if ra != rb {
		return cmpInt(ra, rb)
	}
	if c, ok := order(a, b); ok {
		return c
	}
	if x, ok := a.([]any); ok {
		y, _ := b.([]any)
		for i := 0; i < len(x) && i < len(y); i++ {
			if c := Compare(normalize(x[i]), normalize(y[i])); c != 0 {
				return c
			}
		}
		return cmpInt(len(x), len(y))
	}
	return 0
}

func rank(v any) int {
	switch v.(type) {
	case nil:
		return 0
	case bool:
		return 1
	case time.Time:
		return 3
	case string:
		return 4
	case []any:
		return 5
	}
	if _, ok := number(v); ok {
		return 2
	}
	return 6
}

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
