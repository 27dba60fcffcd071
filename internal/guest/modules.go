package guest

import (
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/ulikunitz/xz"
)

// GuestModules are the modules the agent needs, in the order asked for:
// virtio over MMIO (QEMU microvm's transport) and the balloon for free page
// reporting. Dependencies are added ahead of them by Build.
var GuestModules = []string{"virtio_ring", "virtio", "virtio_mmio", "virtio_balloon"}

// OptionalGuestModules are carried when the kernel package has them.
var OptionalGuestModules = []string{"virtio_console"}

// kernelModule is one module file of a kernel tree.
type kernelModule struct {
	Name string // canonical name: '-' written as '_'
	Path string // file in the extracted tree (.ko, .ko.xz, .ko.zst, .ko.gz)
}

// moduleIndex knows the module files of one kernel version.
type moduleIndex struct {
	dir     string                   // lib/modules/<version>
	files   map[string]*kernelModule // by canonical name
	builtin map[string]bool          // names in modules.builtin
}

// canonicalModule writes a module name the way the kernel does ('-' and '_'
// are the same in module names, the kernel reports '_').
func canonicalModule(name string) string { return strings.ReplaceAll(name, "-", "_") }

// moduleSuffixes are the file endings a module can have, longest first.
var moduleSuffixes = []string{".ko.xz", ".ko.zst", ".ko.gz", ".ko"}

func moduleNameOf(file string) (string, bool) {
	base := filepath.Base(file)
	for _, s := range moduleSuffixes {
		if strings.HasSuffix(base, s) {
			return canonicalModule(strings.TrimSuffix(base, s)), true
		}
	}
	return "", false
}

// indexModules lists the modules under dir (lib/modules/<version>).
func indexModules(dir string) (*moduleIndex, error) {
	idx := &moduleIndex{dir: dir, files: make(map[string]*kernelModule), builtin: make(map[string]bool)}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			if name, ok := moduleNameOf(p); ok {
				idx.files[name] = &kernelModule{Name: name, Path: p}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("index modules in %s: %w", dir, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "modules.builtin")); err == nil {
		for _, line := range strings.Fields(string(b)) {
			if name, ok := moduleNameOf(line); ok {
				idx.builtin[name] = true
			}
		}
	}
	return idx, nil
}

// modinfo is the part of a module's .modinfo section Build uses.
type modinfo struct {
	Name     string
	Depends  []string
	Vermagic string
}

// parseModinfo reads the NUL-separated key=value pairs of a .modinfo section.
func parseModinfo(sec []byte) modinfo {
	var mi modinfo
	for _, kv := range bytes.Split(sec, []byte{0}) {
		k, v, ok := strings.Cut(string(kv), "=")
		if !ok {
			continue
		}
		switch k {
		case "name":
			mi.Name = canonicalModule(v)
		case "vermagic":
			mi.Vermagic = v
		case "depends":
			for _, d := range strings.Split(v, ",") {
				if d = strings.TrimSpace(d); d != "" {
					mi.Depends = append(mi.Depends, canonicalModule(d))
				}
			}
		}
	}
	return mi
}

// readModinfo reads the .modinfo section of an uncompressed module image.
// Its depends= list is what modpost computed from the symbols the module
// uses, the same list depmod would write to modules.dep, which Debian's
// package does not ship (it is generated at install time).
func readModinfo(ko []byte) (modinfo, error) {
	f, err := elf.NewFile(bytes.NewReader(ko))
	if err != nil {
		return modinfo{}, fmt.Errorf("parse ELF: %w", err)
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return modinfo{}, errors.New("no .modinfo section")
	}
	b, err := sec.Data()
	if err != nil {
		return modinfo{}, fmt.Errorf("read .modinfo: %w", err)
	}
	return parseModinfo(b), nil
}

// decompressModule returns the plain ELF of a module file, undoing the
// compression its name says it has (xz and gzip in Go, zstd with the zstd
// tool, since no zstd decoder is among this module's dependencies).
func decompressModule(ctx context.Context, p string) ([]byte, error) {
	raw, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("read module: %w", err)
	}
	switch {
	case strings.HasSuffix(p, ".ko"):
		return raw, nil
	case strings.HasSuffix(p, ".ko.xz"):
		r, err := xz.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("xz %s: %w", p, err)
		}
		return io.ReadAll(r)
	case strings.HasSuffix(p, ".ko.gz"):
		r, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("gzip %s: %w", p, err)
		}
		return io.ReadAll(r)
	case strings.HasSuffix(p, ".ko.zst"):
		zstd, err := exec.LookPath("zstd")
		if err != nil {
			return nil, fmt.Errorf("%s is zstd-compressed and the zstd tool is not installed (apt-get install zstd)", p)
		}
		cmd := exec.CommandContext(ctx, zstd, "-dc", p)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("zstd -dc %s: %w: %s", p, err, bytes.TrimSpace(stderr.Bytes()))
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s: not a module file", p)
}

// resolvedModule is a module ready for the initramfs.
type resolvedModule struct {
	Name       string
	Data       []byte // uncompressed ELF
	Compressed bool   // the package held it compressed
}

// resolveModules returns the wanted modules and everything they depend on,
// each after its dependencies, in a stable order (depth-first in the order
// asked for, dependencies in the order their depends= lists them). Wanted
// modules that are built into the kernel are left out; optional ones that
// the package lacks are skipped. version is checked against each module's
// vermagic so a module from another build is never carried.
func resolveModules(ctx context.Context, idx *moduleIndex, version string, want, optional []string, log *slog.Logger) ([]resolvedModule, error) {
	var out []resolvedModule
	state := map[string]int{} // 1: in progress, 2: done
	var visit func(name string, chain []string) error
	visit = func(name string, chain []string) error {
		switch state[name] {
		case 1:
			return fmt.Errorf("module dependency cycle: %s", strings.Join(append(chain, name), " -> "))
		case 2:
			return nil
		}
		if idx.builtin[name] {
			state[name] = 2
			log.Debug("image: module is built into the kernel", "module", name)
			return nil
		}
		km := idx.files[name]
		if km == nil {
			if len(chain) > 0 {
				return fmt.Errorf("module %s (needed by %s) is not in %s", name, chain[len(chain)-1], idx.dir)
			}
			return fmt.Errorf("module %s is not in %s", name, idx.dir)
		}
		state[name] = 1
		data, err := decompressModule(ctx, km.Path)
		if err != nil {
			return fmt.Errorf("module %s: %w", name, err)
		}
		mi, err := readModinfo(data)
		if err != nil {
			return fmt.Errorf("module %s (%s): %w", name, km.Path, err)
		}
		if !strings.HasPrefix(mi.Vermagic, version+" ") {
			return fmt.Errorf("module %s (%s) is built for %q, not kernel %s", name, km.Path, mi.Vermagic, version)
		}
		for _, dep := range mi.Depends {
			if err := visit(dep, append(chain, name)); err != nil {
				return err
			}
		}
		state[name] = 2
		out = append(out, resolvedModule{Name: name, Data: data, Compressed: !strings.HasSuffix(km.Path, ".ko")})
		return nil
	}
	for _, n := range want {
		if err := visit(canonicalModule(n), nil); err != nil {
			return nil, err
		}
	}
	for _, n := range optional {
		n = canonicalModule(n)
		if idx.files[n] == nil && !idx.builtin[n] {
			log.Info("image: optional module is not in this kernel package; skipped", "module", n)
			continue
		}
		if err := visit(n, nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}
