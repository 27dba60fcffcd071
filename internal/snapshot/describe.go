package snapshot

import (
	"fmt"
	"io"
	"io/fs"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/snapbpf/snapbpf/internal/wset"
)

// Description is what `snapbpf snapshot inspect` shows: the manifest plus the
// files found in the directory. It marshals to stable JSON for --json.
type Description struct {
	Path     string     `json:"path"`
	Manifest Manifest   `json:"manifest"`
	Files    []FileInfo `json:"files"`
	// Problems are what makes a restore fail (Inspect only): a working
	// set that is damaged or recorded for another snapshot, a file that is
	// not safe to use.
	Problems []string `json:"problems,omitempty"`
	// Warnings are oddities that do not make the snapshot unusable, such
	// as leftover temporary files of an interrupted AddFile.
	Warnings []string `json:"warnings,omitempty"`
}

// FileInfo is one file of a snapshot directory.
type FileInfo struct {
	Name string `json:"name"` // slash separated, relative to the directory
	Role string `json:"role"` // "manifest", "state", "mem" or "aux"
	Size int64  `json:"size"`
}

// Describe lists the snapshot for inspection. It reads directory metadata
// only, never the memory file.
func (d *Dir) Describe() Description {
	desc := Description{Path: d.Path, Manifest: d.Manifest}
	err := filepath.WalkDir(d.Path, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			desc.Warnings = append(desc.Warnings, err.Error())
			return nil
		}
		if p == d.Path {
			return nil
		}
		rel, _ := filepath.Rel(d.Path, p)
		rel = filepath.ToSlash(rel)
		switch {
		case e.Name() == lockName:
			return nil // left by a crash just after publishing; harmless
		case isTempName(e.Name()):
			desc.Warnings = append(desc.Warnings, fmt.Sprintf("%s: leftover temporary file of an interrupted write; safe to delete", p))
			if e.IsDir() {
				return fs.SkipDir
			}
			return nil
		case e.IsDir():
			return nil
		}
		fi, err := e.Info()
		if err != nil {
			desc.Warnings = append(desc.Warnings, err.Error())
			return nil
		}
		role := "aux"
		switch rel {
		case ManifestName:
			role = "manifest"
		case StateName:
			role = "state"
		case MemName:
			role = "mem"
		}
		desc.Files = append(desc.Files, FileInfo{Name: rel, Role: role, Size: fi.Size()})
		return nil
	})
	if err != nil {
		desc.Warnings = append(desc.Warnings, err.Error())
	}
	roleOrder := map[string]int{"manifest": 0, "state": 1, "mem": 2, "aux": 3}
	sort.SliceStable(desc.Files, func(i, j int) bool {
		a, b := desc.Files[i], desc.Files[j]
		if roleOrder[a.Role] != roleOrder[b.Role] {
			return roleOrder[a.Role] < roleOrder[b.Role]
		}
		return a.Name < b.Name
	})
	return desc
}

// Inspect is Describe plus every check a restore makes beyond Open's: each
// working set (wset/*.ws, where record stores them) must be safe to open, intact and recorded for this
// snapshot's memory file, as policy snapbpf requires (a symbolic link is
// refused like one to a core file); what interrupted work
// left next to the snapshot is listed among the warnings. It reads the
// working sets and the few memory file blocks that identify it (with
// O_DIRECT where possible, so the cache stays cold).
func (d *Dir) Inspect() Description {
	desc := d.Describe()
	for _, f := range desc.Files {
		// Only wset/ holds snapbpf working sets: the replay harness keeps
		// REAP's compact file as replay/reap.ws, another format.
		if f.Role != "aux" || path.Dir(f.Name) != "wset" || path.Ext(f.Name) != ".ws" {
			continue
		}
		if err := d.checkWorkingSet(f.Name); err != nil {
			desc.Problems = append(desc.Problems, err.Error())
		}
	}
	stale, err := staleDirs(filepath.Dir(d.Path))
	for _, p := range stale {
		desc.Warnings = append(desc.Warnings, fmt.Sprintf("%s: leftover of an interrupted snapshot creation whose process is gone; snapbpf snapshot inspect --fix removes it", p))
	}
	if err != nil {
		desc.Warnings = append(desc.Warnings, err.Error())
	}
	return desc
}

// checkWorkingSet checks the working set name as a restore would.
func (d *Dir) checkWorkingSet(name string) error {
	f, err := d.OpenFile(name)
	if err != nil {
		return err
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		return fmt.Errorf("working set %s: %w", f.Name(), unwrapPath(err))
	}
	var set wset.Set
	if err := set.UnmarshalBinary(data); err != nil {
		return fmt.Errorf("working set %s: %w; record it again with snapbpf record --snapshot %s", f.Name(), err, d.Path)
	}
	if err := set.CheckFile(d.MemPath(), d.Manifest.ID); err != nil {
		return fmt.Errorf("working set %s: %w", f.Name(), err)
	}
	return nil
}

// String renders the description for humans.
func (d Description) String() string {
	m := &d.Manifest
	var b strings.Builder
	row := func(k, format string, args ...any) {
		fmt.Fprintf(&b, "  %-13s %s\n", k+":", fmt.Sprintf(format, args...))
	}
	verdict := "valid"
	if len(d.Problems) > 0 {
		verdict = "NOT valid: a restore would fail"
	}
	fmt.Fprintf(&b, "snapshot %s (%s)\n", d.Path, verdict)
	row("id", "%s", m.ID)
	row("created", "%s", m.Created.UTC().Format(time.RFC3339))
	row("format", "%d", m.FormatVersion)
	fn := m.Function
	if len(m.FunctionOptions) > 0 {
		keys := make([]string, 0, len(m.FunctionOptions))
		for k := range m.FunctionOptions {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		opts := make([]string, len(keys))
		for i, k := range keys {
			opts[i] = fmt.Sprintf("%s=%d", k, m.FunctionOptions[k])
		}
		fn += " (" + strings.Join(opts, ", ") + ")"
	}
	row("function", "%s", fn)
	row("memory", "%d MiB guest; file %s: %s data, %s holes (%.1f%% data)",
		m.MemMiB, bytesHuman(m.MemSize), bytesHuman(m.MemDataBytes), bytesHuman(m.MemHoleBytes), pct(m.MemDataBytes, m.MemSize))
	free := m.FreePages
	if free == "" {
		free = "not recorded"
	}
	if m.ZeroPagesPunched > 0 {
		free += fmt.Sprintf(" (and %s of zero pages made holes)", bytesHuman(m.ZeroPagesPunched*4096))
	}
	row("free pages", "%s", free)
	row("device state", "%s, sha256 %s", bytesHuman(m.StateSize), m.StateSHA256)
	kernel := "sha256 " + m.KernelSHA256
	if m.KernelVersion != "" {
		kernel = m.KernelVersion + ", " + kernel
	}
	row("kernel", "%s", kernel)
	if m.InitramfsSHA256 != "" {
		row("initramfs", "sha256 %s", m.InitramfsSHA256)
	}
	row("agent", "sha256 %s, protocol %d", m.AgentSHA256, m.Agent.ProtocolVersion)
	vmm := m.VMM.Name + " " + m.VMM.Version
	var extra []string
	if m.VMM.Accel != "" {
		extra = append(extra, m.VMM.Accel)
	}
	if m.VMM.Machine != "" {
		extra = append(extra, m.VMM.Machine)
	}
	if len(extra) > 0 {
		vmm += " (" + strings.Join(extra, ", ") + ")"
	}
	row("vmm", "%s", vmm)
	b.WriteString("  files:\n")
	for _, f := range d.Files {
		fmt.Fprintf(&b, "    %-24s %-8s %s\n", f.Name, f.Role, bytesHuman(f.Size))
	}
	for _, p := range d.Problems {
		fmt.Fprintf(&b, "  problem: %s\n", p)
	}
	for _, w := range d.Warnings {
		fmt.Fprintf(&b, "  warning: %s\n", w)
	}
	return b.String()
}

func pct(part, whole int64) float64 {
	if whole == 0 {
		return 0
	}
	return 100 * float64(part) / float64(whole)
}

// bytesHuman renders n with a binary unit, keeping exact bytes when small.
func bytesHuman(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, suffix := float64(n), "KMGTPE"
	i := -1
	for v >= unit && i < len(suffix)-1 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, suffix[i])
}
