package guest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/snapbpf/snapbpf/internal/kmod"
)

// ImageFile is the file in an image directory that describes the image.
const ImageFile = "image.json"

// Other names in an image directory.
const (
	kernelFile        = "vmlinuz"
	initramfsFile     = "initramfs.cpio"
	initramfsGzipFile = "initramfs.cpio.gz"
	rootfsFile        = "rootfs.erofs"
	rebuildHint       = "run snapbpf image build"
	imageTempPrefix   = ".snapbpf-image-"
)

// Where the modules and their load order go in the initramfs: where package
// kmod, in the agent, looks for them.
var (
	guestModuleDir       = strings.TrimPrefix(kmod.Dir, "/")
	guestModuleOrderFile = strings.TrimPrefix(kmod.OrderFile, "/")
)

// Image describes a built guest image. It is stored as Dir/image.json, where
// Kernel and Initramfs are file names relative to Dir (and Dir is left out,
// so the directory can move); Build and Load return them joined with Dir.
type Image struct {
	Dir              string   `json:"dir,omitempty"`
	Kernel           string   `json:"kernel"`
	Initramfs        string   `json:"initramfs"`
	KernelVersion    string   `json:"kernel_version"` // e.g. 6.1.0-56-cloud-amd64
	KernelPackage    string   `json:"kernel_package"` // e.g. linux-image-6.1.0-56-cloud-amd64
	PackageVersion   string   `json:"package_version"`
	KernelSHA256     string   `json:"kernel_sha256"`
	InitramfsSHA256  string   `json:"initramfs_sha256"`
	AgentSHA256      string   `json:"agent_sha256"`
	Modules          []string `json:"modules"` // load order, in /lib/modules/<name>.ko
	InitramfsGzipped bool     `json:"initramfs_gzipped"`

	// Runtime names the language runtime whose read-only root filesystem
	// Rootfs (a file name in Dir, like Kernel) the guest mounts; empty for
	// an image whose functions are built into the agent.
	Runtime      string `json:"runtime,omitempty"`
	Rootfs       string `json:"rootfs,omitempty"`
	RootfsSHA256 string `json:"rootfs_sha256,omitempty"`
}

// Load reads dir/image.json and checks that the kernel and initramfs it
// names exist and still have the recorded digests.
func Load(dir string) (*Image, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("image dir %s: %w", dir, err)
	}
	p := filepath.Join(abs, ImageFile)
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no guest image: %s does not exist: %s", p, rebuildHint)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	var im Image
	if err := json.Unmarshal(b, &im); err != nil {
		return nil, fmt.Errorf("parse %s: %w: %s", p, err, rebuildHint)
	}
	if im.Kernel == "" || im.Initramfs == "" || filepath.Base(im.Kernel) != im.Kernel || filepath.Base(im.Initramfs) != im.Initramfs {
		return nil, fmt.Errorf("%s: kernel and initramfs must be file names in the image directory: %s", p, rebuildHint)
	}
	if im.Rootfs != "" && filepath.Base(im.Rootfs) != im.Rootfs {
		return nil, fmt.Errorf("%s: rootfs must be a file name in the image directory: %s", p, rebuildHint)
	}
	im.setDir(abs)
	if im.Rootfs != "" {
		// Its digest (hundreds of MiB) is checked where a snapshot
		// records or needs it, not on every load.
		if _, err := os.Stat(im.Rootfs); err != nil {
			return nil, fmt.Errorf("guest image's root filesystem: %w: %s", err, rebuildHint)
		}
	}
	for _, f := range []struct{ path, want string }{{im.Kernel, im.KernelSHA256}, {im.Initramfs, im.InitramfsSHA256}} {
		sum, err := fileSHA256(f.path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("guest image file %s is missing: %s", f.path, rebuildHint)
		}
		if err != nil {
			return nil, fmt.Errorf("guest image: %w: %s", err, rebuildHint)
		}
		if sum != f.want {
			return nil, fmt.Errorf("guest image file %s has sha256 %s, %s records %s: %s", f.path, sum, ImageFile, f.want, rebuildHint)
		}
	}
	return &im, nil
}

// setDir makes Kernel and Initramfs paths under dir.
func (im *Image) setDir(dir string) {
	im.Dir = dir
	im.Kernel = filepath.Join(dir, filepath.Base(im.Kernel))
	im.Initramfs = filepath.Join(dir, filepath.Base(im.Initramfs))
	if im.Rootfs != "" {
		im.Rootfs = filepath.Join(dir, filepath.Base(im.Rootfs))
	}
}

// marshal writes the image.json form: file names relative to the directory.
func (im *Image) marshal() ([]byte, error) {
	c := *im
	c.Dir = ""
	c.Kernel = filepath.Base(c.Kernel)
	c.Initramfs = filepath.Base(c.Initramfs)
	if c.Rootfs != "" {
		c.Rootfs = filepath.Base(c.Rootfs)
	}
	b, err := json.MarshalIndent(&c, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", ImageFile, err)
	}
	return append(b, '\n'), nil
}

// sameContent reports whether two images have the same files and metadata.
func (im *Image) sameContent(o *Image) bool {
	a, err1 := im.marshal()
	b, err2 := o.marshal()
	return err1 == nil && err2 == nil && string(a) == string(b)
}
