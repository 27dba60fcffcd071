package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/snapbpf/snapbpf/internal/guest"
	"github.com/snapbpf/snapbpf/internal/rootfs"
)

func newImageCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "image", Short: "Build the guest image (kernel + initramfs with the agent)"}
	var o guest.BuildOptions
	var (
		asJSON  bool
		runtime string
		rebuild bool
	)
	build := &cobra.Command{
		Use:         "build",
		Short:       "Fetch Debian's cloud kernel through apt and build the guest image",
		Annotations: rootOnly("it installs the kernel package cache under /var/cache/snapbpf"),
		Args:        cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.AgentPath == "" {
				p, err := findAgent()
				if err != nil {
					return err
				}
				o.AgentPath = p
			}
			if runtime != "" && !cmd.Flags().Changed("out") {
				o.OutDir = runtimeImageDir(runtime)
			}
			img, err := buildImage(cmd, o, runtime, rebuild)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), img)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "image %s: kernel %s, initramfs %s\n", img.Dir, img.KernelVersion, filepath.Base(img.Initramfs))
			if img.Rootfs != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "runtime %s: root filesystem %s, sha256 %s\n", img.Runtime, filepath.Base(img.Rootfs), img.RootfsSHA256)
			}
			return nil
		},
	}
	build.Flags().StringVar(&o.OutDir, "out", defaultImageDir(), "image directory")
	build.Flags().StringVar(&o.CacheDir, "cache", guest.DefaultCacheDir, "download cache for the kernel package")
	build.Flags().StringVar(&o.AgentPath, "agent", "", "static snapbpf-agent binary (default: next to snapbpf)")
	build.Flags().StringVar(&o.KernelPackage, "kernel-package", "", "exact Debian kernel package (default: what linux-image-cloud-amd64 depends on)")
	build.Flags().StringVar(&runtime, "runtime", "", "add a language runtime's root filesystem built from Debian packages: python, or python-torch (PyTorch too: a 1 GiB download) (default --out: IMAGE-RUNTIME)")
	build.Flags().BoolVar(&rebuild, "rebuild-rootfs", false, "with --runtime: build the root filesystem again even when it is cached (downloaded packages are reused)")
	build.Flags().BoolVar(&asJSON, "json", false, "print the image description as JSON")
	cmd.AddCommand(build)
	return cmd
}

// buildImage builds the guest image o describes (o.Log and o.Progress are
// the command's), with the root filesystem of runtime (none: "") built
// first or found in the cache; rebuild builds the root filesystem again.
func buildImage(cmd *cobra.Command, o guest.BuildOptions, runtime string, rebuild bool) (*guest.Image, error) {
	o.Log, o.Progress = logger(cmd), meter(cmd)
	if runtime != "" {
		rt, err := rootfs.Lookup(runtime)
		if err != nil {
			return nil, fmt.Errorf("--runtime: %w", err)
		}
		fs, err := rootfs.Build(cmd.Context(), rt, rootfs.Options{CacheDir: o.CacheDir, Rebuild: rebuild, Log: o.Log, Progress: o.Progress})
		if err != nil {
			return nil, err
		}
		o.Runtime, o.Rootfs, o.RootfsSHA256 = rt.Name, fs.Path, fs.SHA256
	}
	return guest.Build(cmd.Context(), o)
}

// imageDir is the default image directory of runtime's functions (""
// for the agent's Go functions).
func imageDir(runtime string) string {
	if runtime == "" {
		return defaultImageDir()
	}
	return runtimeImageDir(runtime)
}

// findAgent looks for snapbpf-agent next to the running snapbpf.
func findAgent() (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find snapbpf-agent: %w", err)
	}
	p := filepath.Join(filepath.Dir(self), "snapbpf-agent")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("no guest agent at %s: build it with `make build` (or CGO_ENABLED=0 go build -o %s ./cmd/snapbpf-agent), or pass --agent", p, p)
	}
	return p, nil
}

// loadImage loads the image at dir, saying how to make one when missing.
func loadImage(dir string) (*guest.Image, error) {
	img, err := guest.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("%w (build it with: snapbpf image build --out %s)", err, dir)
	}
	return img, nil
}

// runtimeImageDir is the default image directory of a runtime's images.
func runtimeImageDir(runtime string) string { return defaultImageDir() + "-" + runtime }
