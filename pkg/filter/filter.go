// Package filter is the query language of queryUsers and queryChannels: the
// Stream SDK's filter_conditions (a MongoDB-like JSON object) and sort
// ([{field, direction}]), parsed once and then matched against documents.
//
// Documents are flat maps of JSON-like values (strings, numbers, bools, nil,
// arrays, nested maps) plus time.Time. Values are typed as Stream types them:
// a number never equals a string, a missing field never matches $eq, $in or
// a comparison, while $ne and $nin match it; $exists: false matches only a
// missing field. A condition on an array field matches when any element
// matches, which is how {"members": {"$in": [...]}} works on a channel's
// member ids. Dates compare as times whatever their RFC 3339 spelling.
//
// A Schema (WithSchema) types the known fields of a kind of document, so that
// conditions which can never mean anything ($autocomplete on a boolean, a
// date compared with a number) fail with a message instead of matching
// nothing; fields it does not know are custom fields, typed by their values.
//
// Parse never panics and bounds every input (size, depth, number of
// conditions, list lengths): filters come straight from clients (DESIGN.md
// I7). Errors wrap ErrInvalid and their text names the offending part, for
// the SDK's error message.
package filter

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ErrInvalid is wrapped by every parse error.
var ErrInvalid = errors.New("invalid filter")

// Limits on a filter and a sort.
const (
	MaxBytes      = 64 << 10 // JSON text of a filter or a sort
	MaxDepth      = 10       // nesting of $and/$or/$nor
	MaxConditions = 200      // field conditions in one filter
	MaxList       = 1000     // values in one $in/$nin, filters in one $and/$or/$nor
	MaxFieldLen   = 256      // bytes of a field name
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

var logical = map[string]kind{"$and": kindAnd, "$or": kindOr, "$nor": kindNor}

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
	value any             // operand of every operator but $in/$nin
	list  []any           // $in, $nin
	set   map[string]bool // the strings of list, looked up rather than scanned
}

// Filter is a parsed filter. The zero Filter matches every document.
type Filter struct {
	root node
}

// Parse parses filter_conditions. Empty input, null and {} match all.
func Parse(raw []byte, opts ...Option) (Filter, error) {
	if len(raw) > MaxBytes {
		return Filter{}, errorf("filter_conditions is larger than %d bytes", MaxBytes)
	}
	if len(strings.TrimSpace(string(raw))) == 0 {
		return Filter{}, nil
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return Filter{}, errorf("filter_conditions is not valid JSON: %s", jsonError(err))
	}
	return FromValue(v, opts...)
}

// FromValue parses filter_conditions already decoded from JSON (objects as
// map[string]any, arrays as []any, numbers as float64).
func FromValue(v any, opts ...Option) (Filter, error) {
	if v == nil {
		return Filter{}, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return Filter{}, errorf("filter_conditions must be an object")
	}
	p := parser{}
	for _, o := range opts {
		o(&p)
	}
	n, err := p.object(m, 0)
	if err != nil {
		return Filter{}, err
	}
	return Filter{root: n}, nil
}

type parser struct {
	schema Schema
	conds  int
}

// object parses {field: cond, "$and": [...], ...}: all its entries must hold.
func (p *parser) object(m map[string]any, depth int) (node, error) {
	if depth > MaxDepth {
		return node{}, errorf("filter is nested deeper than %d levels", MaxDepth)
	}
	out := node{kind: kindAnd}
	for _, k := range sortedKeys(m) { // deterministic errors and evaluation order
		v := m[k]
		if !strings.HasPrefix(k, "$") {
			conds, err := p.field(k, v)
			if err != nil {
				return node{}, err
			}
			out.nodes = append(out.nodes, conds...)
			continue
		}
		kd, ok := logical[k]
		if !ok {
			if ops[Op(k)] {
				return node{}, errorf("%s must be applied to a field, as in {\"name\": {\"%s\": ...}}", k, k)
			}
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
	}
	return out, nil
}

// field parses the condition on one field: a plain value ($eq) or an object
// of operators, all of which must hold.
func (p *parser) field(name string, v any) ([]node, error) {
	if err := checkName("field name", name); err != nil {
		return nil, err
	}
	m, isObj := v.(map[string]any)
	if !isObj {
		if _, isList := v.([]any); isList {
			return nil, errorf("field %q: use $in to match one of several values", name)
		}
		n, err := p.cond(name, OpEq, v)
		if err != nil {
			return nil, err
		}
		return []node{n}, nil
	}
	if len(m) == 0 {
		return nil, errorf("condition on field %q is empty", name)
	}
	out := make([]node, 0, len(m))
	for _, k := range sortedKeys(m) {
		op := Op(k)
		_, isLogical := logical[k]
		switch {
		case !strings.HasPrefix(k, "$"):
			return nil, errorf("field %q: %q is not an operator, and objects are not comparable", name, k)
		case isLogical:
			return nil, errorf("%s must be at the top of a filter, not inside field %q", k, name)
		case !ops[op]:
			return nil, errorf("unknown operator %s", k)
		}
		n, err := p.cond(name, op, m[k])
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// cond parses one operator on one field, checking its operand against the
// field's type.
func (p *parser) cond(name string, op Op, arg any) (node, error) {
	p.conds++
	if p.conds > MaxConditions {
		return node{}, errorf("filter has more than %d conditions", MaxConditions)
	}
	t := p.schema[name]
	n := node{kind: kindCond, field: name, op: op}
	switch op {
	case OpEq, OpNe:
		v, ok := operand(t, arg, false, true)
		if !ok {
			return node{}, errorf("%s of field %q must be %s", op, name, want(t, false, true))
		}
		n.value = v
	case OpIn, OpNin:
		list, ok := arg.([]any)
		switch {
		case !ok:
			return node{}, errorf("%s of field %q must be an array", op, name)
		case len(list) == 0:
			return node{}, errorf("%s of field %q must not be empty", op, name)
		case len(list) > MaxList:
			return node{}, errorf("%s of field %q has more than %d values", op, name, MaxList)
		}
		n.list = make([]any, len(list))
		n.set = make(map[string]bool)
		for i, e := range list {
			v, ok := operand(t, e, false, true)
			if !ok {
				return node{}, errorf("each value of %s of field %q must be %s", op, name, want(t, false, true))
			}
			n.list[i] = v
			if s, isStr := v.(string); isStr {
				n.set[s] = true
			}
		}
	case OpGt, OpGte, OpLt, OpLte:
		if t == Bool {
			return node{}, errorf("%s does not apply to field %q, which is %s", op, name, t)
		}
		v, ok := operand(t, arg, true, false)
		if !ok {
			return node{}, errorf("%s of field %q must be %s", op, name, want(t, true, false))
		}
		n.value = v
	case OpExists:
		b, ok := arg.(bool)
		if !ok {
			return node{}, errorf("$exists of field %q must be true or false", name)
		}
		n.value = b
	case OpContains:
		if t != Custom && t != TextList {
			return node{}, errorf("$contains applies to array fields only, and field %q is %s", name, t)
		}
		v, ok := operand(t, arg, false, false)
		if !ok {
			return node{}, errorf("$contains of field %q must be %s", name, want(t, false, false))
		}
		n.value = v
	case OpAutocomplete:
		if t != Custom && t != Text {
			return node{}, errorf("$autocomplete applies to text fields only, and field %q is %s", name, t)
		}
		s, ok := arg.(string)
		if !ok {
			return node{}, errorf("$autocomplete of field %q must be a string", name)
		}
		n.value = strings.ToLower(s)
	}
	return n, nil
}

// operand checks a comparison value against the type of its field and
// returns it ready to compare: Time values parsed, numbers as float64.
// ordered is for $gt and friends; nullable allows null ($eq, $in...).
func operand(t Type, v any, ordered, nullable bool) (any, bool) {
	if v == nil {
		return nil, nullable
	}
	switch t {
	case Text, TextList:
		s, ok := v.(string)
		return s, ok
	case Number:
		f, ok := AsNumber(v)
		return f, ok
	case Bool:
		b, ok := v.(bool)
		return b, ok
	case Time:
		return asTime(v)
	}
	if f, ok := AsNumber(v); ok {
		return f, true
	}
	switch v.(type) {
	case string:
		return v, true
	case bool:
		return v, !ordered
	}
	return nil, false
}

// want says in words what operand accepts.
func want(t Type, ordered, nullable bool) string {
	var s string
	switch t {
	case Text, TextList:
		s = "a string"
	case Number:
		s = "a number"
	case Bool:
		s = "true or false"
	case Time:
		s = "an RFC 3339 time"
	default:
		if ordered {
			s = "a string or a number"
		} else {
			s = "a string, a number or a boolean"
		}
	}
	if nullable {
		s += " or null"
	}
	return s
}

// checkName accepts field names of 1 to MaxFieldLen bytes of printable UTF-8
// that do not start with $ (operators do). Any such name may be a custom
// field, so it may be filtered and sorted on.
func checkName(what, name string) error {
	if name == "" || len(name) > MaxFieldLen {
		return errorf("%s must have 1 to %d bytes", what, MaxFieldLen)
	}
	if !utf8.ValidString(name) || strings.HasPrefix(name, "$") {
		return errorf("%s must be UTF-8 text not starting with $", what)
	}
	for _, r := range name {
		if !unicode.IsPrint(r) && r != ' ' {
			return errorf("%s must not hold control or invisible characters", what)
		}
	}
	return nil
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// jsonError makes a decoding error readable without Go type names.
func jsonError(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}
