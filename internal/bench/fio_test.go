package bench

import (
	"reflect"
	"testing"

	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/wset"
)

func TestReplayRequests(t *testing.T) {
	const pg = wset.PageSize
	all := []snapshot.Extent{{Off: 0, Len: 1 << 30}}
	tests := []struct {
		name    string
		extents []wset.Extent
		data    []snapshot.Extent
		maxLen  int64
		want    []fioRequest
	}{
		{"merged across a small gap, out of order", []wset.Extent{{Page: 7, N: 2}, {Page: 0, N: 4}}, all, 1 << 20,
			[]fioRequest{{0, 9 * pg}}},
		{"kept apart across a large gap", []wset.Extent{{Page: 0, N: 1}, {Page: 100, N: 1}}, all, 1 << 20,
			[]fioRequest{{0, pg}, {100 * pg, pg}}},
		{"hole cut out", []wset.Extent{{Page: 0, N: 10}}, []snapshot.Extent{{Off: 0, Len: 3 * pg}, {Off: 6 * pg, Len: 100 * pg}}, 1 << 20,
			[]fioRequest{{0, 3 * pg}, {6 * pg, 4 * pg}}},
		{"all in a hole", []wset.Extent{{Page: 50, N: 2}}, []snapshot.Extent{{Off: 0, Len: 10 * pg}}, 1 << 20, nil},
		{"split at the request limit", []wset.Extent{{Page: 0, N: 5}}, all, 2 * pg,
			[]fioRequest{{0, 2 * pg}, {2 * pg, 2 * pg}, {4 * pg, pg}}},
		{"partial data page read whole", []wset.Extent{{Page: 1, N: 1}}, []snapshot.Extent{{Off: pg + 100, Len: 10}}, 1 << 20,
			[]fioRequest{{pg, pg}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := replayRequests(tc.extents, tc.data, tc.maxLen)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("replayRequests = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestParseFio(t *testing.T) {
	out := []byte(`note: both iodepth >= 1 and synchronous I/O engine are selected
{"fio version": "fio-3.33", "jobs": [{"jobname": "replay", "read": {"io_bytes": 20971520, "runtime": 16, "bw_bytes": 1310720000}}]}`)
	got, err := parseFio(out)
	if err != nil {
		t.Fatal(err)
	}
	if got.Bytes != 20971520 || got.Ms != 16 {
		t.Errorf("parseFio = %+v", got)
	}
	if _, err := parseFio([]byte(`{"jobs": [{"read": {"io_bytes": 4096, "runtime": 0}}]}`)); err == nil {
		t.Error("a run under a millisecond was accepted")
	}
	if _, err := parseFio([]byte(`{"jobs": []}`)); err == nil {
		t.Error("output without jobs was accepted")
	}
}
