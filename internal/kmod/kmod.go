// Package kmod loads kernel modules from inside the guest, where the agent
// is /init and there is no modprobe: the image builder decides the order
// (dependencies first) and this package only loads files in that order.
package kmod

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Where the guest image (internal/guest) puts the modules and their order.
const (
	// Dir holds <name>.ko for each module, uncompressed.
	Dir = "/lib/modules"
	// OrderFile lists the modules in load order, dependencies first.
	OrderFile = "/etc/snapbpf/modules"
)

// LoadImageModules loads the modules the guest image carries, in the order
// it lists them, and returns their names.
func LoadImageModules() ([]string, error) {
	names, err := ReadOrder(OrderFile)
	if err != nil {
		return nil, err
	}
	return names, LoadAll(Dir, names)
}

// ReadOrder reads a module load order file: one module name per line.
// Blank lines and lines starting with '#' are ignored.
func ReadOrder(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open module order: %w", err)
	}
	defer f.Close()
	var names []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.ContainsAny(line, "/ \t") {
			return nil, fmt.Errorf("read module order %s: bad module name %q", path, line)
		}
		names = append(names, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read module order %s: %w", path, err)
	}
	return names, nil
}

// LoadAll loads dir/<name>.ko for each name, in order, with finit_module.
// A module that is already loaded (EEXIST) counts as loaded, so LoadAll can
// run again, e.g. in an agent restored from a snapshot.
func LoadAll(dir string, names []string) error {
	for _, name := range names {
		if err := Load(filepath.Join(dir, name+".ko")); err != nil {
			return fmt.Errorf("load module %s: %w", name, err)
		}
	}
	return nil
}

// Load loads one uncompressed module file with no parameters.
func Load(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for {
		err = unix.FinitModule(int(f.Fd()), "", 0)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	switch {
	case err == nil, errors.Is(err, unix.EEXIST):
		return nil
	case errors.Is(err, unix.ENOEXEC):
		return fmt.Errorf("finit_module %s: %w (not a module for this kernel, or compressed)", path, err)
	default:
		return fmt.Errorf("finit_module %s: %w", path, err)
	}
}
