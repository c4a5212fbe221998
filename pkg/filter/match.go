package filter

import (
	"cmp"
	"encoding/json"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Match reports whether doc satisfies the filter.
func (f Filter) Match(doc Doc) bool { return f.root.match(doc) }

func (n *node) match(doc Doc) bool {
	switch n.kind {
	case kindAnd:
		for i := range n.nodes {
			if !n.nodes[i].match(doc) {
				return false
			}
		}
		return true
	case kindOr:
		for i := range n.nodes {
			if n.nodes[i].match(doc) {
				return true
			}
		}
		return false
	case kindNor:
		for i := range n.nodes {
			if n.nodes[i].match(doc) {
				return false
			}
		}
		return true
	}
	v, ok := doc.Field(n.field)
	if ok {
		v = normalize(v)
	}
	switch n.op {
	case OpEq:
		return ok && anyElem(v, func(x any) bool { return equal(x, n.value) })
	case OpNe:
		return !ok || !anyElem(v, func(x any) bool { return equal(x, n.value) })
	case OpIn:
		return ok && anyElem(v, n.in)
	case OpNin:
		return !ok || !anyElem(v, n.in)
	case OpExists:
		return ok == n.value.(bool)
	case OpContains:
		switch v.(type) {
		case []any, []string:
			return anyElem(v, func(x any) bool { return equal(x, n.value) })
		}
		return false
	case OpAutocomplete:
		return ok && anyElem(v, func(x any) bool { return autocomplete(x, n.value.(string)) })
	case OpGt, OpGte, OpLt, OpLte:
		return ok && anyElem(v, func(x any) bool {
			c, comparable := order(x, n.value)
			if !comparable {
				return false
			}
			switch n.op {
			case OpGt:
				return c > 0
			case OpGte:
				return c >= 0
			case OpLt:
				return c < 0
			default:
				return c <= 0
			}
		})
	}
	return false
}

// in reports whether x equals one of the values of $in/$nin.
func (n *node) in(x any) bool {
	if s, ok := x.(string); ok && n.set[s] {
		return true
	}
	for _, want := range n.list {
		if _, isStr := want.(string); isStr && !isTime(x) {
			continue // in n.set, and a string equals only a string or a time
		}
		if equal(x, want) {
			return true
		}
	}
	return false
}

// anyElem applies pred to v, or to each element when v is an array.
func anyElem(v any, pred func(any) bool) bool {
	switch list := v.(type) {
	case []any:
		for _, e := range list {
			if pred(normalize(e)) {
				return true
			}
		}
		return false
	case []string:
		for _, e := range list {
			if pred(e) {
				return true
			}
		}
		return false
	}
	return pred(v)
}

// autocomplete reports whether prefix (lower case) starts x or one of its
// words, ignoring case: "le" and "ann l" both match "Ann Lee". The empty
// prefix matches any text, as the SDK sends it while the user starts typing.
func autocomplete(x any, prefix string) bool {
	s, ok := x.(string)
	if !ok {
		return false
	}
	s = strings.ToLower(s)
	if strings.HasPrefix(s, prefix) {
		return true
	}
	prevWord := true // s[0] was checked above
	for i, r := range s {
		word := unicode.IsLetter(r) || unicode.IsDigit(r)
		if word && !prevWord && strings.HasPrefix(s[i:], prefix) {
			return true
		}
		prevWord = word
	}
	return false
}

// normalize turns Go values a document may hold into the kinds the
// comparisons know.
func normalize(v any) any {
	switch x := v.(type) {
	case *time.Time:
		if x == nil {
			return nil
		}
		return *x
	case json.Number:
		if f, err := x.Float64(); err == nil {
			return f
		}
	}
	return v
}

// AsNumber reads any Go or JSON number as a float64: what the filter
// compares numbers as, and what the api's index encodes them as.
func AsNumber(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case float32:
		return float64(x), true
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case int32:
		return float64(x), true
	case uint:
		return float64(x), true
	case uint64:
		return float64(x), true
	case uint32:
		return float64(x), true
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	}
	return 0, false
}

func isTime(v any) bool {
	_, ok := v.(time.Time)
	return ok
}

// asTime reads a time.Time, or an RFC 3339 string with or without fractional
// seconds.
func asTime(v any) (time.Time, bool) {
	switch x := v.(type) {
	case time.Time:
		return x, true
	case string:
		if len(x) > 64 || !utf8.ValidString(x) {
			return time.Time{}, false
		}
		t, err := time.Parse(time.RFC3339Nano, x)
		return t, err == nil
	}
	return time.Time{}, false
}

func equal(a, b any) bool {
	c, ok := order(a, b)
	return ok && c == 0
}

// order compares two values of comparable kinds: numbers with numbers,
// strings with strings, times with times (or RFC 3339 strings), booleans with
// booleans, null with null. Values of other kinds are never equal, greater or
// less.
func order(a, b any) (int, bool) {
	if a == nil || b == nil {
		return 0, a == nil && b == nil
	}
	if x, ok := AsNumber(a); ok {
		y, ok := AsNumber(b)
		return cmp.Compare(x, y), ok
	}
	if isTime(a) || isTime(b) {
		x, ok1 := asTime(a)
		y, ok2 := asTime(b)
		return x.Compare(y), ok1 && ok2
	}
	switch x := a.(type) {
	case string:
		y, ok := b.(string)
		return strings.Compare(x, y), ok
	case bool:
		y, ok := b.(bool)
		return cmpBool(x, y), ok
	}
	return 0, false
}

func cmpBool(x, y bool) int {
	switch {
	case x == y:
		return 0
	case !x:
		return -1
	}
	return 1
}

// Values returns the values field must equal for any document to match, when
// the filter pins it at the top level ({field: v} or {field: {$in: [...]}},
// possibly inside the top-level $and). Callers use it to look documents up by
// key instead of scanning; the filter must still be matched on each.
func (f Filter) Values(field string) ([]any, bool) {
	return f.root.values(field)
}

func (n *node) values(field string) ([]any, bool) {
	if n.kind != kindAnd {
		return nil, false
	}
	for i := range n.nodes {
		c := &n.nodes[i]
		if c.kind == kindAnd {
			if v, ok := c.values(field); ok {
				return v, true
			}
			continue
		}
		if c.kind != kindCond || c.field != field {
			continue
		}
		switch c.op {
		case OpEq:
			return []any{c.value}, true
		case OpIn:
			return c.list, true
		}
	}
	return nil, false
}

// Members returns the strings that conditions anywhere in the filter ask an
// array field to hold, and whether the filter asks nothing else of it: then
// it matches a document whose field holds only those of the strings it
// really holds exactly as one holding them all. A channel's members are
// read that way, a few keys each instead of the whole list. Sorting on the
// field is not the filter's business: callers check that themselves.
func (f Filter) Members(field string) (values []string, only bool) {
	only = true
	var walk func(n *node)
	walk = func(n *node) {
		if n.kind != kindCond {
			for i := range n.nodes {
				walk(&n.nodes[i])
			}
			return
		}
		if n.field != field {
			return
		}
		switch n.op {
		case OpEq, OpNe, OpContains:
			if s, ok := n.value.(string); ok {
				values = append(values, s)
			}
		case OpIn, OpNin:
			for _, v := range n.list {
				if s, ok := v.(string); ok {
					values = append(values, s)
				}
			}
		case OpExists:
		default:
			only = false // a range or $autocomplete reads every element
		}
	}
	walk(&f.root)
	return values, only
}
