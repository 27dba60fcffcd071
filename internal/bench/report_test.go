package bench

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteReport(t *testing.T) {
	cfg := Reduced()
	cfg.Notes = []string{"other helpers ran QEMU guests meanwhile"}
	res := fakeResults(cfg)
	dir := t.TempDir()
	if err := WriteReport(res, dir); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, ReportFile))
	if err != nil {
		t.Fatal(err)
	}
	md := string(b)
	for _, want := range []string{
		"## Figure 1 (real VMs):", "## Figure 2 (real VMs):", "## Figure 3 (real VMs):", "## Figure 4 (real VMs):",
		"## Figure 6 (host, no VMs):", "## Figure 1 (replay):", "## Figure 2 (replay):", "## Figure 3 (replay):",
		"## Figure 5 (replay):", "## Traces",
		"other helpers ran QEMU guests meanwhile",
		"Test CPU, 2 CPUs",
		// json lazy N=1: 1000 ms * (0.95, 1, 1.05) over the three runs.
		"| json | 1000 (950–1050) | 1800 (1710–1890) | 700 (665–735) | 1100 (1045–1155) | 500 (475–525) | 1.43x | 1.40x |",
		// Figure 2: lazy at N=1 is the basis.
		"| json | lazy | 1.00, 105 MiB | 1.09, 114 MiB | 1.27, 134 MiB |",
		// Figure 6: 20 MB in 20 ms against 26 ms.
		"| json | 19.1 | 500 | 20 (19–21) | 26 (25–27) | 1000 (952–1053) | 769 (733–810) | 1.30x | – |",
		"Expected time of the full set",
		// Figure 1 (replay): lazy 200 ms, warm 100 ms; reap and faasnap present.
		"| json | 200 (190–210) | 360 (342–378) | 140 (133–147) | 150 (142–158) | 160 (152–168) | 100 (95–105) | 1.43x | 1.40x |",
		// The side-by-side tables.
		"## Snapshots and working sets",
		"| json | 160 | 64.0 | 128.0 | 64.0 MiB (50%) | 10.0 (2560 pages) | – |",
		"| json | 500 / 1000 / 700 | 1.40x | 0.70x | 100 / 600 / 300 | 3.00x | 0.50x | 400 |",
		"| json | 500 / 1000 / 1100 | 2.20x | 1.10x | 4000 | 50% / 30% / 2.0% / 5.0% | 2.0% / 8.0% |",
		"| json | 140 / 150 / 160 | 0.93x | 105 / 110 / 114 | 0.92x | 20% |",
		"| python:pyaes |",
		// Figure 5: scatter 0.5 costs half again.
		"| json | snapbpf | 140 (133–147) / 66.8 | 210 (200–220) / 66.8 | 280 (266–294) / 66.8 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	// Every caption says where, and which numbers come from the replay
	// harness rather than real VMs.
	for _, part := range strings.Split(md, "## Figure")[1:] {
		title := strings.SplitN(part, "\n", 2)[0]
		if strings.Contains(title, "(replay)") {
			if !strings.Contains(part, replayHow) || !strings.Contains(part, "Replayed on the host Test CPU") {
				t.Errorf("caption of figure%s does not say it comes from the replay harness, and where", title)
			}
			continue
		}
		if !strings.Contains(part, "replay harness") || !strings.Contains(part, "real QEMU microVMs") {
			t.Errorf("caption of figure%s lacks the replay note or where it was measured", title)
		}
	}
	if strings.Contains(md, "NaN") {
		t.Error("report shows NaN")
	}
	for _, name := range []string{"fig1-latency", "fig2-memory", "fig3-concurrency", "fig4-breakdown", "fig6-prefetch",
		"fig1-latency-replay", "fig2-memory-replay", "fig3-concurrency-replay", "fig5-fragmentation-replay"} {
		for _, ext := range PlotFormats {
			p := filepath.Join(dir, name+"."+ext)
			data, err := os.ReadFile(p)
			if err != nil {
				t.Errorf("plot missing: %v", err)
				continue
			}
			if len(data) < 1000 {
				t.Errorf("%s is only %d bytes", p, len(data))
			}
			switch ext {
			case "png":
				if _, err := png.DecodeConfig(bytes.NewReader(data)); err != nil {
					t.Errorf("%s: %v", p, err)
				}
			case "svg":
				if !bytes.Contains(data, []byte("<svg")) {
					t.Errorf("%s is not SVG", p)
				}
			}
		}
		if !strings.Contains(md, "("+name+".svg)") {
			t.Errorf("report does not show %s", name)
		}
	}
}

// TestWriteReportPartial renders results with one experiment and missing
// cells: figures without data are left out, nothing fails.
func TestWriteReportPartial(t *testing.T) {
	cfg := Reduced()
	cfg.Experiments = []string{ExpPrefetch}
	cfg.Functions = []string{"json"}
	res := fakeResults(cfg)
	res.Runs = res.Runs[:1] // only the prefetch series, no fio
	res.Runs = append(res.Runs, Run{Key: Key{ExpLatency, "json", "lazy", 1, 1, 0}, Machine: fakeMachine, Error: "vm 0: boom"})
	dir := t.TempDir()
	if err := WriteReport(res, dir); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, ReportFile))
	md := string(b)
	if strings.Contains(md, "## Figure 1") || !strings.Contains(md, "## Figure 6") {
		t.Errorf("wrong figures in a prefetch-only report:\n%s", md)
	}
	if !strings.Contains(md, "## Failed cells") || !strings.Contains(md, "vm 0: boom") {
		t.Error("report does not list the failed cell")
	}
	if _, err := os.Stat(filepath.Join(dir, "fig1-latency.svg")); err == nil {
		t.Error("an empty figure was drawn")
	}
}
