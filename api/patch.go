package api

import (
	"maps"
	"slices"
	"strings"

	"github.com/presencehq/presence/pkg/apierror"
)

// fieldPatch is a partial update of custom data, as the SDK sends it for a
// channel (updatePartial) and a member (updateMemberPartial): set, then
// unset. A name with dots is a path into nested objects ("detail.topic"):
// set creates the objects on its way, unset of a path that is not there
// does nothing.
type fieldPatch struct {
	Set   map[string]any `json:"set"`
	Unset []string       `json:"unset"`
}

// maxPatchPath bounds a field name or path.
const maxPatchPath = 256

// check checks the names before anything is read or written.
func (p fieldPatch) check() error {
	for k := range p.Set {
		if err := checkPath(k); err != nil {
			return err
		}
	}
	for _, k := range p.Unset {
		if err := checkPath(k); err != nil {
			return err
		}
	}
	return nil
}

func checkPath(path string) error {
	if path == "" || len(path) > maxPatchPath {
		return apierror.Input("field names must have 1 to %d characters", maxPatchPath)
	}
	if strings.HasPrefix(path, ".") || strings.HasSuffix(path, ".") || strings.Contains(path, "..") {
		return apierror.Input("field path %q has an empty name in it", path)
	}
	return nil
}

// apply returns data as the patch changes it, data itself untouched (every
// object on a changed path is copied). Fields whose first name is reserved
// are not changed this way. Setting through a value that is not an object
// is an error.
func (p fieldPatch) apply(data map[string]any, reserved map[string]bool) (map[string]any, error) {
	out := maps.Clone(data)
	if out == nil {
		out = map[string]any{}
	}
	// Set in a stable order: "a" and "a.b" in one patch give the same
	// result on every run.
	keys := make([]string, 0, len(p.Set))
	for k := range p.Set {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		names := strings.Split(k, ".")
		if reserved[names[0]] {
			continue
		}
		if err := setPath(out, names, p.Set[k]); err != nil {
			return nil, err
		}
	}
	for _, k := range p.Unset {
		names := strings.Split(k, ".")
		if reserved[names[0]] {
			continue
		}
		unsetPath(out, names)
	}
	return out, nil
}

// setPath sets names in obj (which the caller owns), copying each nested
// object it changes.
func setPath(obj map[string]any, names []string, v any) error {
	for i, name := range names[:len(names)-1] {
		next, ok := obj[name].(map[string]any)
		switch {
		case ok:
			next = maps.Clone(next)
		case obj[name] == nil:
			next = map[string]any{}
		default:
			return apierror.Input("cannot set %s: %s is not an object", strings.Join(names, "."), strings.Join(names[:i+1], "."))
		}
		obj[name] = next
		obj = next
	}
	obj[names[len(names)-1]] = v
	return nil
}

// unsetPath deletes names from obj (which the caller owns), copying each
// nested object on the way; a path that is not there is left alone.
func unsetPath(obj map[string]any, names []string) {
	if _, there := lookupPath(obj, names); !there {
		return
	}
	for _, name := range names[:len(names)-1] {
		next := maps.Clone(obj[name].(map[string]any)) // an object: lookupPath found the path
		obj[name] = next
		obj = next
	}
	delete(obj, names[len(names)-1])
}

// lookupPath is the value at names in obj, and whether there is one.
func lookupPath(obj map[string]any, names []string) (any, bool) {
	for _, name := range names[:len(names)-1] {
		next, ok := obj[name].(map[string]any)
		if !ok {
			return nil, false
		}
		obj = next
	}
	v, ok := obj[names[len(names)-1]]
	return v, ok
}
