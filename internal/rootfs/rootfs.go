// Package rootfs builds the read-only root filesystems of language runtimes
// (Python) from Debian packages: mmdebstrap makes the tree, the runner is
// added, Python's .pyc files are recompiled so they stay valid with clamped
// timestamps, and mkfs.erofs makes a byte-reproducible image. Images are
// cached by a digest of their recipe (suite, packages, runner files).
package rootfs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/snapbpf/snapbpf/internal/atomicfile"
	"github.com/snapbpf/snapbpf/internal/guest"
	"github.com/snapbpf/snapbpf/internal/logging"
	"github.com/snapbpf/snapbpf/internal/progress"
	"github.com/snapbpf/snapbpf/internal/rootfs/layout"
)

// recipeVersion changes whenever Build makes a different tree from the same
// recipe (other hooks, excludes, compile options), so old cache entries are
// not reused.
const recipeVersion = 1

// Paths inside the image.
const (
	RunnerDir  = layout.RunnerDir
	RunnerPath = layout.RunnerPath
	Python     = layout.Python
)

// File names in a cache entry.
const (
	ImageName = "rootfs.erofs"
	MetaName  = "rootfs.json"
)

// imageUUID is the filesystem UUID of every image: a random one would make
// each build differ.
const imageUUID = "6e3f3b1a-5a9b-4c1e-9f3e-736e61706266"

// The runner and the functions of each runtime: python/ is the runner and
// the functions every Python image has, python-torch/ adds the torch ones.
//
//go:embed all:python all:python-torch
var runnerFiles embed.FS

// Runtime is a recipe: a Debian suite, the packages to install and the
// files snapbpf adds.
type Runtime struct {
	Name     string
	Suite    string
	Packages []string
	// Optional runtimes are large and built only when asked for by name
	// (tests that need one skip without it).
	Optional bool
	// files are copied under RunnerDir, in order (a later layer's file
	// replaces an earlier one's).
	files []fs.FS
}

// pythonPackages are the python runtime's packages; the other Python
// runtimes add theirs, so every Python function runs in each.
var pythonPackages = []string{"python3", "python3-pyaes", "python3-numpy", "python3-pil", "python3-chameleon"}

// Runtimes are the runtimes snapbpf can build, by name.
var Runtimes = map[string]Runtime{
	"python": {
		Name:     "python",
		Suite:    "bookworm",
		Packages: pythonPackages,
		files:    []fs.FS{mustSub(runnerFiles, "python")},
	},
	// PyTorch 1.13 (CPU) from Debian: about 400 packages and 1 GiB
	// installed (libtorch pulls in OpenCV, FFmpeg, GDAL and Qt).
	"python-torch": {
		Name:     "python-torch",
		Suite:    "bookworm",
		Packages: append(slices.Clip(pythonPackages), "python3-torch"),
		Optional: true,
		files:    []fs.FS{mustSub(runnerFiles, "python"), mustSub(runnerFiles, "python-torch")},
	},
}

func mustSub(f fs.FS, dir string) fs.FS {
	s, err := fs.Sub(f, dir)
	if err != nil {
		panic(err)
	}
	return s
}

// Lookup returns the runtime named name.
func Lookup(name string) (Runtime, error) {
	r, ok := Runtimes[name]
	if !ok {
		var names []string
		for n := range Runtimes {
			names = append(names, n)
		}
		sort.Strings(names)
		return Runtime{}, fmt.Errorf("unknown runtime %q (have: %s)", name, strings.Join(names, ", "))
	}
	return r, nil
}

// pathExcludes keep documentation out of the tree (dpkg --path-exclude).
var pathExcludes = []string{"/usr/share/man/*", "/usr/share/locale/*", "/usr/share/doc/*", "/usr/share/info/*"}

// Tools are the host commands Build runs, with their Debian packages.
var Tools = []guest.Tool{
	{Command: "mmdebstrap", Package: "mmdebstrap"},
	{Command: "mkfs.erofs", Package: "erofs-utils"},
}

// Image is a built runtime image, described by MetaName beside it.
type Image struct {
	Runtime  string   `json:"runtime"`
	Recipe   string   `json:"recipe"` // digest of what went into the image (see Runtime.Recipe)
	Suite    string   `json:"suite"`
	Packages []string `json:"packages"`
	// Installed lists every package in the image as name=version.
	Installed []string `json:"installed"`
	SHA256    string   `json:"sha256"` // of the image file
	Size      int64    `json:"size"`
	BuildMs   int64    `json:"build_ms"`
	// Path is the image file (not stored: the directory can move).
	Path string `json:"path,omitempty"`
}

// Recipe is the digest of everything that decides the image's contents
// besides the mirror: the recipe version, suite, packages, excludes and
// the runner's files. It names the cache entry.
func (r Runtime) Recipe() (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "snapbpf-rootfs %d\nruntime %s\nsuite %s\n", recipeVersion, r.Name, r.Suite)
	for _, p := range r.Packages {
		fmt.Fprintf(h, "package %s\n", p)
	}
	for _, p := range pathExcludes {
		fmt.Fprintf(h, "exclude %s\n", p)
	}
	for _, files := range r.files {
		err := fs.WalkDir(files, ".", func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := fs.ReadFile(files, p)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "file %s %x\n", p, sha256.Sum256(b))
			return nil
		})
		if err != nil {
			return "", fmt.Errorf("runtime %s: runner files: %w", r.Name, err)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Options say where Build works and what it may reuse.
type Options struct {
	// CacheDir holds the images (CacheDir/rootfs/<runtime>-<recipe>) and
	// the downloaded packages (CacheDir/rootfs/debs); default
	// guest.DefaultCacheDir.
	CacheDir string
	// PackageCache holds the downloaded packages, reused across builds;
	// default CacheDir/rootfs/debs.
	PackageCache string
	// Rebuild makes the tree and image again even when the cache holds
	// them; downloaded packages are still reused.
	Rebuild bool
	// Log receives diagnostics; nil discards them.
	Log *slog.Logger
	// Progress shows the build's steps; nil shows nothing.
	Progress progress.Meter
}

// buildSteps are the steps Build shows: tools, packages and tree, runner
// and .pyc, image, publish.
const buildSteps = 5

// EntryDir is the cache directory of runtime r's image.
func EntryDir(cacheDir string, r Runtime) (string, error) {
	recipe, err := r.Recipe()
	if err != nil {
		return "", err
	}
	if cacheDir == "" {
		cacheDir = guest.DefaultCacheDir
	}
	return filepath.Join(cacheDir, "rootfs", r.Name+"-"+recipe[:16]), nil
}

// Build returns runtime r's image from the cache, building it first when it
// is missing (or o.Rebuild). The image appears complete or not at all.
func Build(ctx context.Context, r Runtime, o Options) (*Image, error) {
	start := time.Now()
	log := logging.Or(o.Log)
	if o.CacheDir == "" {
		o.CacheDir = guest.DefaultCacheDir
	}
	recipe, err := r.Recipe()
	if err != nil {
		return nil, err
	}
	entry, err := EntryDir(o.CacheDir, r)
	if err != nil {
		return nil, err
	}
	if !o.Rebuild {
		if im, err := Load(entry); err == nil {
			log.Info("rootfs: cached", "runtime", r.Name, "image", im.Path, "sha256", im.SHA256)
			return im, nil
		}
	}
	job := progress.Or(o.Progress).Start("runtime image "+r.Name, buildSteps)
	defer job.Done()
	job.Step("tools")
	if err := guest.InstallTools(ctx, log, Tools...); err != nil {
		return nil, fmt.Errorf("runtime %s: %w", r.Name, err)
	}
	base := filepath.Dir(entry)
	if err := os.MkdirAll(base, 0o755); err != nil {
		return nil, fmt.Errorf("runtime image cache: %w", err)
	}
	debs := o.PackageCache
	if debs == "" {
		debs = filepath.Join(base, "debs")
	}
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return nil, fmt.Errorf("runtime image cache: %w", err)
	}
	// One build at a time per package cache: mmdebstrap copies packages
	// in and out of it.
	unlock, err := lockDir(debs, log)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if !o.Rebuild {
		// Another build may have finished while this one waited.
		if im, err := Load(entry); err == nil {
			log.Info("rootfs: cached", "runtime", r.Name, "image", im.Path, "sha256", im.SHA256)
			return im, nil
		}
	}
	work, err := os.MkdirTemp(base, ".build-"+r.Name+"-")
	if err != nil {
		return nil, fmt.Errorf("runtime image work dir: %w", err)
	}
	defer os.RemoveAll(work)
	tree := filepath.Join(work, "tree")

	job.Step("mmdebstrap")
	log.Info("rootfs: installing packages with mmdebstrap (minutes on a cold cache)", "runtime", r.Name, "suite", r.Suite, "packages", strings.Join(r.Packages, " "))
	t0 := time.Now()
	if err := mmdebstrap(ctx, r, tree, debs); err != nil {
		return nil, err
	}
	log.Info("rootfs: tree made", "runtime", r.Name, "elapsed", time.Since(t0).Round(time.Millisecond))
	job.Step("runner and .pyc")
	if err := addFiles(tree, r); err != nil {
		return nil, fmt.Errorf("runtime %s: add runner: %w", r.Name, err)
	}
	t0 = time.Now()
	if err := compilePython(ctx, tree); err != nil {
		return nil, err
	}
	log.Info("rootfs: .pyc recompiled (unchecked-hash)", "runtime", r.Name, "elapsed", time.Since(t0).Round(time.Millisecond))
	installed, err := installedPackages(tree)
	if err != nil {
		return nil, err
	}
	img := filepath.Join(work, ImageName)
	job.Step("mkfs.erofs")
	t0 = time.Now()
	if err := mkfsErofs(ctx, img, tree); err != nil {
		return nil, err
	}
	sum, size, err := fileDigest(img)
	if err != nil {
		return nil, err
	}
	log.Info("rootfs: erofs image made", "runtime", r.Name, "bytes", size, "sha256", sum, "elapsed", time.Since(t0).Round(time.Millisecond))
	job.Step("publish")
	im := &Image{
		Runtime: r.Name, Recipe: recipe, Suite: r.Suite,
		Packages: r.Packages, Installed: installed,
		SHA256: sum, Size: size, BuildMs: time.Since(start).Milliseconds(),
	}
	if err := publish(entry, work, img, im); err != nil {
		return nil, err
	}
	im.Path = filepath.Join(entry, ImageName)
	log.Info("rootfs: built", "runtime", r.Name, "image", im.Path, "elapsed", time.Since(start).Round(time.Second))
	return im, nil
}

// mmdebstrap installs r's packages into tree (which must not exist),
// reusing and refilling the downloaded packages in debs.
func mmdebstrap(ctx context.Context, r Runtime, tree, debs string) error {
	args := []string{
		"--variant=essential",
		"--include=" + strings.Join(r.Packages, ","),
		// Keep the downloaded packages for the next build (sync-out).
		"--skip=essential/unlink",
		"--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives/",
		"--setup-hook=sync-in " + debs + " /var/cache/apt/archives/",
		"--customize-hook=sync-out /var/cache/apt/archives " + debs,
		// No fsync per unpacked file: the tree is thrown away if the
		// build does not finish, and fsyncs dominated builds on a busy disk.
		// mmdebstrap keeps its dpkg options in the tree; this one only
		// concerns the build, and must not change the image.
		"--dpkgopt=force-unsafe-io",
		"--customize-hook=sed -i /force-unsafe-io/d \"$1\"/etc/dpkg/dpkg.cfg.d/99mmdebstrap",
		// The host's name and resolver do not belong in a reproducible image.
		"--customize-hook=rm -f \"$1\"/etc/resolv.conf \"$1\"/etc/hostname",
	}
	for _, p := range pathExcludes {
		args = append(args, "--dpkgopt=path-exclude="+p)
	}
	args = append(args, r.Suite, tree)
	args = append(args, hostSources()...)
	cmd := exec.CommandContext(ctx, "mmdebstrap", args...)
	// SOURCE_DATE_EPOCH makes mmdebstrap's own output reproducible. Its
	// helpers (mmtarfilter, once per package) start through env python3:
	// Debian's, not a python3 found earlier in the user's PATH (a pyenv
	// shim costs a few shell starts each).
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=0", "LC_ALL=C.UTF-8", "PATH=/usr/sbin:/usr/bin:/sbin:/bin")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("mmdebstrap %s: %w: %s", r.Suite, err, tail(out.Bytes(), 2000))
	}
	return nil
}

// hostSources are the host's apt source files, so the image comes from the
// mirror the host already uses; none means mmdebstrap's default mirror.
func hostSources() []string {
	var out []string
	if b, err := os.ReadFile("/etc/apt/sources.list"); err == nil && hasSourceLine(b) {
		out = append(out, "/etc/apt/sources.list")
	}
	for _, glob := range []string{"/etc/apt/sources.list.d/*.list", "/etc/apt/sources.list.d/*.sources"} {
		m, _ := filepath.Glob(glob)
		sort.Strings(m)
		out = append(out, m...)
	}
	return out
}

func hasSourceLine(b []byte) bool {
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			return true
		}
	}
	return false
}

// WriteRunner writes the runtime's runner and functions into dir, as the
// image holds them under RunnerDir (tests run them on the host).
func (r Runtime) WriteRunner(dir string) error {
	for _, files := range r.files {
		if err := writeFiles(dir, files); err != nil {
			return err
		}
	}
	return nil
}

// addFiles copies the runner's files into tree under RunnerDir.
func addFiles(tree string, r Runtime) error {
	return r.WriteRunner(filepath.Join(tree, RunnerDir))
}

func writeFiles(dst string, files fs.FS) error {
	return fs.WalkDir(files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		target := filepath.Join(dst, filepath.FromSlash(p))
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := fs.ReadFile(files, p)
		if err != nil {
			return err
		}
		if err := os.WriteFile(target, b, 0o644); err != nil {
			return err
		}
		return os.Chmod(target, 0o644) // whatever the umask
	})
}

// compilePython recompiles every .pyc in the tree with hash-based
// invalidation that is never checked. Debian's .pyc files record source
// timestamps, which the image clamps (-T0): Python would then find every
// .pyc stale and recompile on each import (numpy: 6 s instead of 1.3 s
// under TCG). The image is read-only, so unchecked is safe.
func compilePython(ctx context.Context, tree string) error {
	args := []string{tree, Python, "-m", "compileall", "-f", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash"}
	for _, d := range []string{"/usr/lib/python3", "/usr/lib/python3.11", RunnerDir} {
		if _, err := os.Stat(filepath.Join(tree, d)); err == nil {
			args = append(args, d)
		}
	}
	cmd := exec.CommandContext(ctx, "chroot", args...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C.UTF-8", "PYTHONHASHSEED=0", "SOURCE_DATE_EPOCH=0"}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("compile .pyc in the image tree (chroot %s python3 -m compileall): %w: %s", tree, err, tail(out, 2000))
	}
	return nil
}

// mkfsErofs makes a reproducible erofs image of tree: timestamps clamped to
// 0, every file owned by root, a fixed UUID.
func mkfsErofs(ctx context.Context, img, tree string) error {
	cmd := exec.CommandContext(ctx, "mkfs.erofs", "-T0", "--all-root", "-U", imageUUID, img, tree)
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.erofs %s: %w: %s", img, err, tail(out, 2000))
	}
	return nil
}

// installedPackages reads name=version of every installed package from the
// tree's dpkg status, sorted.
func installedPackages(tree string) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(tree, "var/lib/dpkg/status"))
	if err != nil {
		return nil, fmt.Errorf("read the image's dpkg status: %w", err)
	}
	var out []string
	for _, stanza := range strings.Split(string(b), "\n\n") {
		var name, version string
		installed := false
		for _, l := range strings.Split(stanza, "\n") {
			k, v, _ := strings.Cut(l, ": ")
			switch k {
			case "Package":
				name = v
			case "Version":
				version = v
			case "Status":
				installed = strings.HasSuffix(v, " installed")
			}
		}
		if name != "" && installed {
			out = append(out, name+"="+version)
		}
	}
	sort.Strings(out)
	return out, nil
}

// publish moves the image and its description into entry, replacing what
// was there, in one rename of the directory.
func publish(entry, work, img string, im *Image) error {
	dir := filepath.Join(work, "entry")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("runtime image: %w", err)
	}
	if err := os.Rename(img, filepath.Join(dir, ImageName)); err != nil {
		return fmt.Errorf("runtime image: %w", err)
	}
	if err := os.Chmod(filepath.Join(dir, ImageName), 0o444); err != nil {
		return fmt.Errorf("runtime image: %w", err)
	}
	b, err := json.MarshalIndent(im, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", MetaName, err)
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, MetaName), append(b, '\n'), 0o644); err != nil {
		return err
	}
	old := filepath.Join(work, "old")
	if err := os.Rename(entry, old); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("replace %s: %w", entry, err)
	}
	if err := os.Rename(dir, entry); err != nil {
		return fmt.Errorf("move runtime image into %s: %w", entry, err)
	}
	return atomicfile.SyncDir(filepath.Dir(entry))
}

// Load reads the cache entry in dir and checks the image's size; its
// digest is checked by Verify where it matters (snapshots).
func Load(dir string) (*Image, error) {
	b, err := os.ReadFile(filepath.Join(dir, MetaName))
	if err != nil {
		return nil, fmt.Errorf("runtime image %s: %w", dir, err)
	}
	var im Image
	if err := json.Unmarshal(b, &im); err != nil {
		return nil, fmt.Errorf("runtime image %s: parse %s: %w", dir, MetaName, err)
	}
	im.Path = filepath.Join(dir, ImageName)
	st, err := os.Stat(im.Path)
	if err != nil {
		return nil, fmt.Errorf("runtime image %s: %w", dir, err)
	}
	if st.Size() != im.Size {
		return nil, fmt.Errorf("runtime image %s: %d bytes, %s says %d: rebuild it (snapbpf image build --runtime %s)", im.Path, st.Size(), MetaName, im.Size, im.Runtime)
	}
	return &im, nil
}

// fileDigest returns the SHA256 and size of the file at p.
func fileDigest(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("read %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

func tail(b []byte, n int) string {
	b = bytes.TrimSpace(b)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// lockDir takes an exclusive lock on dir/.lock, waiting for it, and returns
// its release.
func lockDir(dir string, log *slog.Logger) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock package cache: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		log.Info("rootfs: waiting for another build using the package cache", "dir", dir)
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
			f.Close()
			return nil, fmt.Errorf("lock package cache %s: %w", dir, err)
		}
	}
	return func() { f.Close() }, nil
}
