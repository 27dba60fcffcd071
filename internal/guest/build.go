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
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/snapbpf/snapbpf/internal/atomicfile"
	"github.com/snapbpf/snapbpf/internal/logging"
	"github.com/snapbpf/snapbpf/internal/progress"
)

// DefaultCacheDir holds downloaded kernel packages and their extracted trees.
const DefaultCacheDir = "/var/cache/snapbpf"

// BuildOptions says what Build puts in a guest image and where.
type BuildOptions struct {
	// CacheDir holds downloaded .deb files and extracted trees
	// (default DefaultCacheDir).
	CacheDir string
	// OutDir receives the image: kernel, initramfs and image.json. It is
	// replaced as a whole; it may not hold other files.
	OutDir string
	// AgentPath is the static agent binary installed as /init.
	AgentPath string
	// KernelPackage is the exact kernel package to use. Empty means the
	// package DefaultKernelMeta depends on.
	KernelPackage string
	// ExtraModules are carried (with their dependencies) after GuestModules
	// and OptionalGuestModules, e.g. "vmw_vsock_virtio_transport".
	ExtraModules []string
	// GzipInitramfs compresses the initramfs. It makes the file about half
	// the size but the boot slower under TCG, where decompression is
	// emulated, so it is off by default.
	GzipInitramfs bool
	// Runtime and Rootfs add a language runtime's read-only root
	// filesystem (an erofs image file, package rootfs) to the image, and
	// RootfsModules to the initramfs so the guest can mount it.
	Runtime string
	Rootfs  string
	// RootfsSHA256 is Rootfs's digest, as its builder computed it.
	RootfsSHA256 string
	// Log receives diagnostics; nil discards them.
	Log *slog.Logger
	// Progress shows the build's steps; nil shows nothing.
	Progress progress.Meter
}

// buildSteps are the steps Build shows: kernel package, download,
// extract, modules, initramfs, write.
const buildSteps = 6

// RootfsModules are what the guest needs to mount a runtime's root
// filesystem: the virtio block device and erofs (dependencies are added).
var RootfsModules = []string{"virtio_blk", "erofs"}

// Build makes a guest image in o.OutDir from Debian's cloud kernel package
// and o.AgentPath, reusing the package and its extracted tree from
// o.CacheDir when they are there. The image appears in o.OutDir complete or
// not at all: it is written to a temporary directory next to it and swapped
// in with one rename.
func Build(ctx context.Context, o BuildOptions) (*Image, error) {
	start := time.Now()
	log := logging.Or(o.Log)
	if o.OutDir == "" {
		return nil, errors.New("build guest image: no output directory")
	}
	if o.AgentPath == "" {
		return nil, errors.New("build guest image: no agent binary")
	}
	if o.CacheDir == "" {
		o.CacheDir = DefaultCacheDir
	}
	outDir, err := filepath.Abs(o.OutDir)
	if err != nil {
		return nil, fmt.Errorf("output dir %s: %w", o.OutDir, err)
	}
	agent, err := readAgent(o.AgentPath)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.CacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("cache dir: %w", err)
	}

	job := progress.Or(o.Progress).Start("image build", buildSteps)
	defer job.Done()
	a := &apt{log: log}
	pkgName := o.KernelPackage
	job.Step("kernel package")
	if pkgName == "" {
		if pkgName, err = a.resolveKernelPackage(ctx, DefaultKernelMeta); err != nil {
			return nil, err
		}
		log.Info("image: kernel package", "meta", DefaultKernelMeta, "package", pkgName)
	}
	pkg, err := a.show(ctx, pkgName)
	if err != nil {
		return nil, err
	}
	job.Step("download " + pkg.Name)
	deb, debSum, err := a.fetch(ctx, o.CacheDir, pkg)
	if err != nil {
		return nil, err
	}
	job.Step("extract")
	tree, err := ensureTree(ctx, o.CacheDir, deb, debSum, log)
	if err != nil {
		return nil, err
	}
	version, kernelPath, err := findKernel(tree)
	if err != nil {
		return nil, fmt.Errorf("kernel package %s: %w", pkgName, err)
	}
	kernel, err := os.ReadFile(kernelPath)
	if err != nil {
		return nil, fmt.Errorf("read kernel: %w", err)
	}

	job.Step("modules")
	idx, err := indexModules(filepath.Join(tree, "lib", "modules", version))
	if err != nil {
		return nil, err
	}
	want := append(append([]string(nil), GuestModules...), o.ExtraModules...)
	if o.Rootfs != "" {
		want = append(want, RootfsModules...)
	}
	mods, err := resolveModules(ctx, idx, version, want, OptionalGuestModules, log)
	if err != nil {
		return nil, fmt.Errorf("kernel package %s: %w", pkgName, err)
	}
	im := &Image{
		KernelVersion:    version,
		KernelPackage:    pkgName,
		PackageVersion:   pkg.Version,
		KernelSHA256:     bytesSHA256(kernel),
		AgentSHA256:      bytesSHA256(agent),
		InitramfsGzipped: o.GzipInitramfs,
	}
	compressed := 0
	for _, m := range mods {
		im.Modules = append(im.Modules, m.Name)
		if m.Compressed {
			compressed++
		}
	}
	log.Info("image: modules", "load_order", strings.Join(im.Modules, " "), "compressed", compressed, "total", len(mods))

	job.Step("initramfs")
	initramfs, err := buildInitramfs(agent, mods, o.GzipInitramfs)
	if err != nil {
		return nil, err
	}
	im.InitramfsSHA256 = bytesSHA256(initramfs)
	im.Kernel, im.Initramfs = kernelFile, initramfsFile
	if o.GzipInitramfs {
		im.Initramfs = initramfsGzipFile
	}
	if o.Rootfs != "" {
		if o.Runtime == "" || o.RootfsSHA256 == "" {
			return nil, errors.New("build guest image: a root filesystem needs its runtime name and digest")
		}
		im.Runtime, im.Rootfs, im.RootfsSHA256 = o.Runtime, rootfsFile, o.RootfsSHA256
	}
	im.setDir(outDir)

	if old, err := Load(outDir); err == nil && old.sameContent(im) {
		log.Info("image: up to date", "dir", outDir, "elapsed", time.Since(start).Round(time.Millisecond).String())
		return old, nil
	}
	job.Step("write")
	if err := writeImage(outDir, im, kernel, initramfs, o.Rootfs); err != nil {
		return nil, err
	}
	log.Info("image: built", "dir", outDir, "kernel", version, "kernel_bytes", len(kernel), "initramfs_bytes", len(initramfs),
		"elapsed", time.Since(start).Round(time.Millisecond).String())
	return im, nil
}

// readAgent reads the agent binary and checks it can run as /init: an
// x86-64 ELF executable without a dynamic loader (the initramfs has no libc).
func readAgent(p string) ([]byte, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("read agent: %w", err)
	}
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("agent %s is not an ELF executable: %w", p, err)
	}
	if f.Machine != elf.EM_X86_64 || (f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN) {
		return nil, fmt.Errorf("agent %s is not an x86-64 executable (%s, %s)", p, f.Machine, f.Type)
	}
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return nil, fmt.Errorf("agent %s is dynamically linked; build it static (CGO_ENABLED=0 go build)", p)
		}
	}
	return b, nil
}

// ensureTree returns the directory the .deb is extracted in, extracting it
// first if needed. The directory name carries the package digest, and it
// only ever appears complete (extracted elsewhere, then renamed).
func ensureTree(ctx context.Context, cacheDir, deb, sum string, log *slog.Logger) (string, error) {
	tree := filepath.Join(cacheDir, strings.TrimSuffix(filepath.Base(deb), ".deb")+"-"+sum[:12])
	if st, err := os.Stat(tree); err == nil && st.IsDir() {
		return tree, nil
	}
	start := time.Now()
	tmp, err := os.MkdirTemp(cacheDir, ".extract-")
	if err != nil {
		return "", fmt.Errorf("extract dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := extractDeb(ctx, deb, tmp); err != nil {
		return "", err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", fmt.Errorf("extract dir: %w", err)
	}
	if err := os.Rename(tmp, tree); err != nil {
		// Another build may have extracted the same package meanwhile.
		if st, serr := os.Stat(tree); serr == nil && st.IsDir() {
			return tree, nil
		}
		return "", fmt.Errorf("move extracted tree into cache: %w", err)
	}
	log.Info("image: extracted kernel package", "deb", filepath.Base(deb), "elapsed", time.Since(start).Round(time.Millisecond).String())
	return tree, nil
}

// findKernel returns the kernel version (the one directory under
// lib/modules) and the path of its boot/vmlinuz-<version>.
func findKernel(tree string) (string, string, error) {
	ents, err := os.ReadDir(filepath.Join(tree, "lib", "modules"))
	if err != nil {
		return "", "", fmt.Errorf("no lib/modules in the package: %w", err)
	}
	var versions []string
	for _, e := range ents {
		if e.IsDir() {
			versions = append(versions, e.Name())
		}
	}
	if len(versions) != 1 {
		return "", "", fmt.Errorf("want one kernel version under lib/modules, found %q", versions)
	}
	k := filepath.Join(tree, "boot", "vmlinuz-"+versions[0])
	if _, err := os.Stat(k); err != nil {
		return "", "", fmt.Errorf("no kernel image: %w", err)
	}
	return versions[0], k, nil
}

// buildInitramfs lays out the initramfs: the agent as /init, the modules and
// their load order, the mount points the agent uses, and /dev/console, which
// the kernel opens for /init's stdin, stdout and stderr before starting it
// (it does not mount devtmpfs for an initramfs).
func buildInitramfs(agent []byte, mods []resolvedModule, gz bool) ([]byte, error) {
	a := newCpioArchive()
	a.File("init", 0o755, agent)
	for _, d := range []string{"dev", "proc", "sys", "tmp", "run"} {
		a.Dir(d, 0o755)
	}
	a.Dir("tmp", 0o1777) // sticky and world-writable, like any /tmp
	a.CharDev("dev/console", 0o600, 5, 1)
	var order bytes.Buffer
	for _, m := range mods {
		a.File(guestModuleDir+"/"+m.Name+".ko", 0o644, m.Data)
		order.WriteString(m.Name + "\n")
	}
	a.Dir(guestModuleDir, 0o755)
	a.File(guestModuleOrderFile, 0o644, order.Bytes())

	var buf bytes.Buffer
	var w io.Writer = &buf
	var zw *gzip.Writer
	if gz {
		// gzip output for a given input and level is fixed, and the header
		// carries no name or time here, so the digest stays stable.
		zw, _ = gzip.NewWriterLevel(&buf, gzip.BestCompression)
		w = zw
	}
	if _, err := a.WriteTo(w); err != nil {
		return nil, fmt.Errorf("write initramfs: %w", err)
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			return nil, fmt.Errorf("compress initramfs: %w", err)
		}
	}
	return buf.Bytes(), nil
}

// knownImageFiles are the only names writeImage will replace in an
// existing output directory.
var knownImageFiles = map[string]bool{ImageFile: true, kernelFile: true, initramfsFile: true, initramfsGzipFile: true, rootfsFile: true}

// writeImage writes the image files into a new directory beside outDir and
// swaps it with outDir in one rename, so readers see the old image or the
// new one, never a mix. A root filesystem file is linked in (copied when
// it is on another filesystem).
func writeImage(outDir string, im *Image, kernel, initramfs []byte, rootfs string) error {
	if ents, err := os.ReadDir(outDir); err == nil {
		for _, e := range ents {
			if !knownImageFiles[e.Name()] {
				return fmt.Errorf("refusing to replace %s: it holds %s, which is not part of a guest image", outDir, e.Name())
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("output dir: %w", err)
	}
	parent := filepath.Dir(outDir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("output dir: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, imageTempPrefix)
	if err != nil {
		return fmt.Errorf("temporary image dir: %w", err)
	}
	defer os.RemoveAll(tmp) // after a swap this holds the old image
	meta, err := im.marshal()
	if err != nil {
		return err
	}
	if rootfs != "" {
		if err := linkOrCopy(rootfs, filepath.Join(tmp, rootfsFile)); err != nil {
			return err
		}
	}
	for _, f := range []struct {
		name string
		data []byte
	}{
		{filepath.Base(im.Kernel), kernel},
		{filepath.Base(im.Initramfs), initramfs},
		{ImageFile, meta}, // last: its presence means the rest is there
	} {
		if err := writeSynced(filepath.Join(tmp, f.name), f.data); err != nil {
			return err
		}
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("temporary image dir: %w", err)
	}
	if err := atomicfile.SyncDir(tmp); err != nil {
		return err
	}
	err = unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, outDir, unix.RENAME_EXCHANGE)
	if errors.Is(err, unix.ENOENT) {
		err = unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, outDir, unix.RENAME_NOREPLACE)
	}
	if err != nil {
		return fmt.Errorf("move image into %s: %w", outDir, err)
	}
	return atomicfile.SyncDir(parent)
}

func writeSynced(p string, data []byte) error {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("create %s: %w", p, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", p, err)
	}
	return f.Close()
}

// linkOrCopy makes dst the same file as src: a hard link, or a synced copy
// across filesystems.
func linkOrCopy(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("root filesystem: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o444)
	if err != nil {
		return fmt.Errorf("root filesystem: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy root filesystem to %s: %w", dst, err)
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return fmt.Errorf("sync %s: %w", dst, err)
	}
	return out.Close()
}
