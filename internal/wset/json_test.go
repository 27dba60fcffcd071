package wset

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/snapbpf/snapbpf/internal/pages"
)

func TestShowJSON(t *testing.T) {
	s := sampleSet()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Pages   int64       `json:"pages"`
		Bytes   int64       `json:"bytes"`
		Extents [][2]uint64 `json:"extents"`
		Mem     Identity    `json:"mem"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if got.Pages != 322 || got.Bytes != 322*pages.Size || got.Mem != s.Mem {
		t.Fatalf("summary %s", b)
	}
	var want [][2]uint64
	for _, e := range s.Extents {
		want = append(want, [2]uint64{e.Page, e.N})
	}
	if !slices.Equal(got.Extents, want) {
		t.Fatalf("extents %v, want %v (first-touch order)", got.Extents, want)
	}

	empty, _ := json.Marshal(&Set{})
	var m map[string]any
	if err := json.Unmarshal(empty, &m); err != nil {
		t.Fatal(err)
	}
	if ext, ok := m["extents"].([]any); !ok || len(ext) != 0 {
		t.Fatalf("empty set extents: %s", empty)
	}
}

func TestExtentJSON(t *testing.T) {
	var e pages.Extent
	if err := json.Unmarshal([]byte("[12, 3]"), &e); err != nil || e != (pages.Extent{Page: 12, N: 3}) {
		t.Fatalf("%v %v", e, err)
	}
	if err := json.Unmarshal([]byte("[1]"), &e); err == nil {
		t.Fatal("accepted [1]")
	}
}
