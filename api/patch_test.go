package api

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestFieldPatchFollowsDottedPaths(t *testing.T) {
	before := `{"detail": {"rating": 5, "topic": "a"}, "level": 3, "id": "kept"}`
	for _, tc := range []struct {
		name  string
		patch string
		want  string // "" for an input error
	}{
		{"a nested field is set, its siblings kept", `{"set": {"detail.topic": "b"}}`, `{"detail": {"rating": 5, "topic": "b"}, "level": 3, "id": "kept"}`},
		{"a nested field is unset", `{"unset": ["detail.rating"]}`, `{"detail": {"topic": "a"}, "level": 3, "id": "kept"}`},
		{"set creates the objects on its way", `{"set": {"new.deep.er": [1]}}`, `{"detail": {"rating": 5, "topic": "a"}, "level": 3, "id": "kept", "new": {"deep": {"er": [1]}}}`},
		{"unset of a path that is not there does nothing", `{"unset": ["detail.none", "level.x", "no.such"]}`, before},
		{"set first, then unset", `{"set": {"detail.x": 1}, "unset": ["detail"]}`, `{"level": 3, "id": "kept"}`},
		{"reserved fields are not changed", `{"set": {"id": "new", "id.x": 1}, "unset": ["id"]}`, before},
		{"setting through a value that is not an object", `{"set": {"level.x": 1}}`, ""},
		{"an empty name in a path", `{"set": {"detail..topic": 1}}`, ""},
		{"a path ending in a dot", `{"unset": ["detail."]}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var data, want map[string]any
			var p fieldPatch
			if err := json.Unmarshal([]byte(before), &data); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(tc.patch), &p); err != nil {
				t.Fatal(err)
			}
			err := p.check()
			var got map[string]any
			if err == nil {
				got, err = p.apply(data, map[string]bool{"id": true})
			}
			if tc.want == "" {
				if err == nil {
					t.Fatalf("got %v, want an input error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(tc.want), &want); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got %v, want %v", got, want)
			}
		})
	}
}
