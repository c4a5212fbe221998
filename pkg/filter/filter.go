// Package filter is the query language of queryUsers and queryChannels: the
// Stream SDK's filter_conditions (a MongoDB-like JSON object) and sort
// ([{field, direction}]), parsed once and then matched against documents.
//
// Documents are flat maps of JSON-like values (strings, numbers, bools, nil,
// arrays, nested maps) plus time.Time; a string filter value is compared to a
// time.Time as an RFC 3339 time. As in MongoDB, a condition on an array field
// matches when any element matches, which is how {"members": {"$in": [...]}}
// works on a channel's member ids.
//
// Parse never panics and bounds every input (depth, number of conditions,
// list lengths): filters come straight from clients (DESIGN.md I7). Errors
// wrap ErrInvalid and their text names the offending part, for the SDK's
// error message.
package filter

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode"
)

// ErrInvalid is wrapped by every parse error.
var ErrInvalid = errors.New("invalid filter")

// Limits on a filter.
const (
	MaxDepth      = 8    // nesting of $and/$or/$nor
	MaxConditions = 200  // field conditions in one filter
	MaxList       = 1000 // values in one $in/$nin/$and/$or/$nor
	MaxFieldLen   = 256
	MaxSortFields = 10
)

type parseError struct{ msg string }

func (e *parseError) Error() string { return e.msg }
func (e *parseError) Unwrap() error { return ErrInvalid }

func errorf(format string, args ...any) error {
	return &parseError{fmt.Sprintf(format, args...)}
}

// Doc is what a filter matches: a document's field values by name.
type Doc interface {
	Field(name string) (any, bool)
}

// Map is a Doc held in a map.
type Map map[string]any

// Field returns m[name].
func (m Map) Field(name string) (any, bool) {
	v, ok := m[name]
	return v, ok
}

// Op is a comparison operator.
type Op string

// Operators.
const (
	OpEq           Op = "$eq"
	OpNe           Op = "$ne"
	OpIn           Op = "$in"
	OpNin          Op = "$nin"
	OpGt           Op = "$gt"
	OpGte          Op = "$gte"
	OpLt           Op = "$lt"
	OpLte          Op = "$lte"
	OpExists       Op = "$exists"
	OpContains     Op = "$contains"
	OpAutocomplete Op = "$autocomplete"
)

var ops = map[Op]bool{
	OpEq: true, OpNe: true, OpIn: true, OpNin: true, OpGt: true, OpGte: true,
	OpLt: true, OpLte: true, OpExists: true, OpContains: true, OpAutocomplete: true,
}

type kind int

const (
	kindAnd kind = iota
	kindOr
	kindNor
	kindCond
)

// node is one node of a parsed filter.
type node struct {
	kind  kind
	nodes []node // $and, $or, $nor
	field string // kindCond
	op    Op
	value any   // scalar operand
	list  []any // $in, $nin
}

// Filter is a parsed filter. The zero Filter matches every document.
type Filter struct {
	root node
}

// Parse parses filter_conditions. Empty input, "null" and {} match all.
func Parse(raw []byte) (Filter, error) {
	if len(strings.TrimSpace(string(raw))) == 0 {
		return Filter{}, nil
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return Filter{}, errorf("filter_conditions is not valid JSON: %v", err)
	}
	return FromValue(v)
}

// FromValue parses filter_conditions already decoded from JSON.
func FromValue(v any) (Filter, error) {
	if v == nil {
		return Filter{}, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return Filter{}, errorf("filter_conditions must be an object")
	}
	p := parser{}
	n, err := p.object(m, 0)
	if err != nil {
		return Filter{}, err
	}
	return Filter{root: n}, nil
}

type parser struct{ conds int }

// object parses {field: cond, "$and": [...], ...}: all its entries must hold.
func (p *parser) object(m map[string]any, depth int) (node, error) {
	if depth > MaxDepth {
		return node{}, errorf("filter is nested deeper than %d levels", MaxDepth)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys) // deterministic errors and evaluation order
	out := node{kind: kindAnd}
	for _, k := range keys {
		v := m[k]
		if strings.HasPrefix(k, "$") {
			var kd kind
			switch k {
			case "$and":
				kd = kindAnd
			case "$or":
				kd = kindOr
			case "$nor":
				kd = kindNor
			default:
				return node{}, errorf("unknown operator %s", k)
			}
			list, ok := v.([]any)
			if !ok || len(list) == 0 {
				return node{}, errorf("%s must be a non-empty array of filters", k)
			}
			if len(list) > MaxList {
				return node{}, errorf("%s has more than %d filters", k, MaxList)
			}
			group := node{kind: kd}
			for _, e := range list {
				sub, ok := e.(map[string]any)
				if !ok {
					return node{}, errorf("%s must be a non-empty array of filters", k)
				}
				n, err := p.object(sub, depth+1)
				if err != nil {
					return node{}, err
				}
				group.nodes = append(group.nodes, n)
			}
			out.nodes = append(out.nodes, group)
			continue
		}
		if k == "" || len(k) > MaxFieldLen {
			return node{}, errorf("field name must have 1 to %d characters", MaxFieldLen)
		}
		conds, err := p.field(k, v)
		if err != nil {
			return node{}, err
		}
		out.nodes = append(out.nodes, conds...)
	}
	return out, nil
}

// field parses the condition on one field: a plain value ($eq) or an object
// of operators.
func (p *parser) field(name string, v any) ([]node, error) {
	m, isObj := v.(map[string]any)
	if !isObj {
		if _, isList := v.([]any); isList {
			return nil, errorf("field %s: use $in to match a list of values", name)
		}
		return p.add(node{kind: kindCond, field: name, op: OpEq, value: v})
	}
	if len(m) == 0 {
		return nil, errorf("field %s: empty condition", name)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []node
	for _, k := range keys {
		op := Op(k)
		if !strings.HasPrefix(k, "$") {
			return nil, errorf("field %s: %q is not an operator; objects are not comparable", name, k)
		}
		if !ops[op] {
			return nil, errorf("unknown operator %s", k)
		}
		arg := m[k]
		n := node{kind: kindCond, field: name, op: op}
		switch op {
		case OpIn, OpNin:
			list, ok := arg.([]any)
			if !ok {
				return nil, errorf("field %s: %s needs an array", name, k)
			}
			if len(list) > MaxList {
				return nil, errorf("field %s: %s has more than %d values", name, k, MaxList)
			}
			for _, e := range list {
				if !scalar(e) {
					return nil, errorf("field %s: %s values must be strings, numbers, booleans or null", name, k)
				}
			}
			n.list = list
		case OpExists:
			b, ok := arg.(bool)
			if !ok {
				return nil, errorf("field %s: $exists needs true or false", name)
			}
			n.value = b
		case OpAutocomplete:
			s, ok := arg.(string)
			if !ok {
				return nil, errorf("field %s: $autocomplete needs a string", name)
			}
			n.value = strings.ToLower(s)
		case OpGt, OpGte, OpLt, OpLte:
			switch arg.(type) {
			case string, float64, json.Number, int, int64:
			default:
				return nil, errorf("field %s: %s needs a string or a number", name, k)
			}
			n.value = arg
		default:
			if !scalar(arg) {
				return nil, errorf("field %s: %s needs a string, number, boolean or null", name, k)
			}
			n.value = arg
		}
		more, err := p.add(n)
		if err != nil {
			return nil, err
		}
		out = append(out, more...)
	}
	return out, nil
}

func (p *parser) add(n node) ([]node, error) {
	p.conds++
	if p.conds > MaxConditions {
		return nil, errorf("filter has more than %d conditions", MaxConditions)
	}
	return []node{n}, nil
}

func scalar(v any) bool {
	switch v.(type) {
	case nil, string, bool, float64, json.Number, int, int64:
		return true
	}
	return false
}

// Match reports whether doc satisfies the filter.
func (f Filter) Match(doc Doc) bool { return f.root.match(doc) }

func (n node) match(doc Doc) bool {
	switch n.kind {
	case kindAnd:
		for _, c := range n.nodes {
			if !c.match(doc) {
				return false
			}
		}
		return true
	case kindOr:
		for _, c := range n.nodes {
			if c.match(doc) {
				return true
			}
		}
		return false
	case kindNor:
		for _, c := range n.nodes {
			if c.match(doc) {
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
		return eq(v, ok, n.value)
	case OpNe:
		return !eq(v, ok, n.value)
	case OpIn:
		return in(v, ok, n.list)
	case OpNin:
		return !in(v, ok, n.list)
	case OpExists:
		return ok == n.value.(bool)
	case OpContains:
		list, isList := v.([]any)
		if !ok || !isList {
			return false
		}
		for _, e := range list {
			if equal(e, n.value) {
				return true
			}
		}
		return false
	case OpAutocomplete:
		return anyElem(v, ok, func(x any) bool { return autocomplete(x, n.value.(string)) })
	case OpGt, OpGte, OpLt, OpLte:
		return anyElem(v, ok, func(x any) bool {
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

// anyElem applies pred to v, or to each element when v is an array.
func anyElem(v any, ok bool, pred func(any) bool) bool {
	if !ok {
		return false
	}
	if list, isList := v.([]any); isList {
		for _, e := range list {
			if pred(e) {
				return true
			}
		}
		return false
	}
	return pred(v)
}

// eq is $eq: null matches a missing field, arrays match by element.
func eq(v any, ok bool, want any) bool {
	if want == nil && (!ok || v == nil) {
		return true
	}
	return anyElem(v, ok, func(x any) bool { return equal(x, want) })
}

func in(v any, ok bool, list []any) bool {
	for _, want := range list {
		if eq(v, ok, want) {
			return true
		}
	}
	return false
}

func autocomplete(x any, prefix string) bool {
	s, ok := x.(string)
	if !ok {
		return false
	}
	s = strings.ToLower(s)
	if strings.HasPrefix(s, prefix) {
		return true
	}
	for _, w := range strings.FieldsFunc(s, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }) {
		if strings.HasPrefix(w, prefix) {
			return true
		}
	}
	return false
}

// normalize turns Go values a document may hold into the JSON-like kinds the
// comparisons know.
func normalize(v any) any {
	switch x := v.(type) {
	case []string:
		out := make([]any, len(x))
		for i, s := range x {
			out[i] = s
		}
		return out
	case *time.Time:
		if x == nil {
			return nil
		}
		return *x
	}
	return v
}

func number(v any) (float64, bool) {
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

func asTime(v any) (time.Time, bool) {
	switch x := v.(type) {
	case time.Time:
		return x, true
	case string:
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
// booleans, null with null.
func order(a, b any) (int, bool) {
	if a == nil || b == nil {
		if a == nil && b == nil {
			return 0, true
		}
		return 0, false
	}
	if x, ok := number(a); ok {
		y, ok := number(b)
		if !ok {
			return 0, false
		}
		return cmpFloat(x, y), true
	}
	_, aTime := a.(time.Time)
	_, bTime := b.(time.Time)
	if aTime || bTime {
		x, ok1 := asTime(a)
		y, ok2 := asTime(b)
		if !ok1 || !ok2 {
			return 0, false
		}
		return x.Compare(y), true
	}
	switch x := a.(type) {
	case string:
		y, ok := b.(string)
		if !ok {
			return 0, false
		}
		return strings.Compare(x, y), true
	case bool:
		y, ok := b.(bool)
		if !ok {
			return 0, false
		}
		switch {
		case x == y:
			return 0, true
		case !x:
			return -1, true
		default:
			return 1, true
		}
	}
	return 0, false
}

func cmpFloat(x, y float64) int {
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// Values returns the values field must equal for any document to match, when
// the filter pins it at the top level ({field: v} or {field: {$in: [...]}},
// possibly inside the top-level $and). Callers use it to look documents up by
// key instead of scanning; the filter must still be matched on each.
func (f Filter) Values(field string) ([]any, bool) {
	return f.root.values(field)
}

func (n node) values(field string) ([]any, bool) {
	if n.kind != kindAnd {
		return nil, false
	}
	for _, c := range n.nodes {
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
