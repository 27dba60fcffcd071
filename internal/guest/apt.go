package guest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// DefaultKernelMeta is the Debian metapackage whose dependency names the
// current cloud kernel package.
const DefaultKernelMeta = "linux-image-cloud-amd64"

// aptPackage is what apt-cache show says about a package's candidate version.
type aptPackage struct {
	Name     string
	Version  string
	Filename string // pool path; its base name is what apt-get download writes
	Size     string
	SHA256   string
}

// apt runs the apt tools. It is a struct so the logging and the "apt-get
// update once" decision stay in one place.
type apt struct {
	log     *slog.Logger
	updated bool
}

func (a *apt) run(ctx context.Context, dir string, name string, args ...string) ([]byte, error) {
	bin, err := exec.LookPath(name)
	if err != nil {
		return nil, fmt.Errorf("%w: %s is not installed; building the guest image needs a Debian or Ubuntu host with apt, since the kernel comes from Debian's package", errNoApt, name)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	// No debconf questions: nobody answers them.
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

// errNoApt means the apt tools are missing; retrying after an update is
// pointless then.
var errNoApt = errors.New("apt not available")

// update runs apt-get update, at most once per build.
func (a *apt) update(ctx context.Context, why string) error {
	if a.updated {
		return nil
	}
	a.updated = true
	a.log.Info("image: running apt-get update", "why", why)
	if _, err := a.run(ctx, "", "apt-get", "update"); err != nil {
		return fmt.Errorf("apt-get update (needs root): %w", err)
	}
	return nil
}

// resolveKernelPackage names the kernel package meta depends on, the way
// `apt-cache depends` prints it ("  Depends: linux-image-6.1.0-NN-cloud-amd64").
func (a *apt) resolveKernelPackage(ctx context.Context, meta string) (string, error) {
	for attempt := 0; ; attempt++ {
		out, err := a.run(ctx, "", "apt-cache", "depends", meta)
		if name := parseDependsImage(out); name != "" {
			return name, nil
		}
		if errors.Is(err, errNoApt) {
			return "", err
		}
		if attempt > 0 {
			if err != nil {
				return "", fmt.Errorf("resolve kernel package from %s: %w", meta, err)
			}
			return "", fmt.Errorf("resolve kernel package: %s depends on no linux-image package even after apt-get update; set the kernel package by name", meta)
		}
		if uerr := a.update(ctx, fmt.Sprintf("apt-cache depends %s named no kernel package", meta)); uerr != nil {
			return "", uerr
		}
	}
}

// parseDependsImage picks the first linux-image-* dependency from
// `apt-cache depends` output.
func parseDependsImage(out []byte) string {
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "|"))
		dep, ok := strings.CutPrefix(line, "Depends:")
		if !ok {
			continue
		}
		dep = strings.Trim(strings.TrimSpace(dep), "<>")
		if strings.HasPrefix(dep, "linux-image-") {
			return dep
		}
	}
	return ""
}

// show returns the candidate version's record of pkg, running apt-get
// update once if apt does not know the package.
func (a *apt) show(ctx context.Context, pkg string) (*aptPackage, error) {
	for attempt := 0; ; attempt++ {
		out, err := a.run(ctx, "", "apt-cache", "show", "--no-all-versions", pkg)
		if errors.Is(err, errNoApt) {
			return nil, err
		}
		if err == nil {
			if p := parseAptShow(out); p.Version != "" {
				p.Name = pkg
				return p, nil
			}
		}
		if attempt > 0 {
			return nil, fmt.Errorf("kernel package %s is not known to apt even after apt-get update: check the name (apt-cache search linux-image) and the sources in /etc/apt", pkg)
		}
		if uerr := a.update(ctx, fmt.Sprintf("apt-cache show %s found nothing", pkg)); uerr != nil {
			return nil, uerr
		}
	}
}

// parseAptShow reads the fields Build needs from the first stanza.
func parseAptShow(out []byte) *aptPackage {
	p := &aptPackage{}
	for _, line := range strings.Split(string(out), "\n") {
		if line == "" && p.Version != "" {
			break // end of the first stanza
		}
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "Version":
			p.Version = v
		case "Filename":
			p.Filename = v
		case "Size":
			p.Size = v
		case "SHA256":
			p.SHA256 = strings.ToLower(v)
		}
	}
	return p
}

// debFileName is the name apt-get download gives the package's file.
func (p *aptPackage) debFileName() string {
	if p.Filename != "" {
		return filepath.Base(p.Filename)
	}
	// apt writes an epoch's ':' as "%3a".
	return fmt.Sprintf("%s_%s_amd64.deb", p.Name, strings.ReplaceAll(p.Version, ":", "%3a"))
}

// fetch returns the path and SHA256 of the package's .deb in cacheDir,
// downloading it with apt-get download unless a copy with the right digest
// is there. The download goes to a private directory first, so the cache
// never holds a partial or unverified file.
func (a *apt) fetch(ctx context.Context, cacheDir string, p *aptPackage) (string, string, error) {
	dst := filepath.Join(cacheDir, p.debFileName())
	if _, err := os.Stat(dst); err == nil {
		sum, err := fileSHA256(dst)
		if err != nil {
			return "", "", err
		}
		switch p.SHA256 {
		case "":
			a.log.Info("image: reusing cached package (apt gives no SHA256 to check it against)", "deb", dst)
			return dst, sum, nil
		case sum:
			a.log.Info("image: reusing cached package (sha256 matches apt)", "deb", dst)
			return dst, sum, nil
		}
		a.log.Warn("image: cached package differs from apt; downloading again", "deb", dst, "sha256", sum, "apt_sha256", p.SHA256)
	}
	tmp, err := os.MkdirTemp(cacheDir, ".download-")
	if err != nil {
		return "", "", fmt.Errorf("download dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	// apt drops to the _apt user to download, which cannot write to a
	// root-only directory; running it as the caller avoids that (and its
	// warning) and is what happens anyway after the warning.
	a.log.Info("image: apt-get download", "package", p.Name, "version", p.Version, "bytes", p.Size)
	if _, err := a.run(ctx, tmp, "apt-get", "download", "-o", "APT::Sandbox::User=root", p.Name+"="+p.Version); err != nil {
		return "", "", fmt.Errorf("download kernel package: %w", err)
	}
	got, err := findDeb(tmp)
	if err != nil {
		return "", "", err
	}
	sum, err := fileSHA256(got)
	if err != nil {
		return "", "", err
	}
	if p.SHA256 != "" && sum != p.SHA256 {
		return "", "", fmt.Errorf("downloaded %s has sha256 %s, apt-cache show says %s", filepath.Base(got), sum, p.SHA256)
	}
	if err := os.Rename(got, dst); err != nil {
		return "", "", fmt.Errorf("move download into cache: %w", err)
	}
	return dst, sum, nil
}

// findDeb returns the one .deb apt-get download left in dir.
func findDeb(dir string) (string, error) {
	m, err := filepath.Glob(filepath.Join(dir, "*.deb"))
	if err != nil {
		return "", err
	}
	if len(m) != 1 {
		return "", fmt.Errorf("apt-get download left %d .deb files in %s, want 1", len(m), dir)
	}
	return m[0], nil
}

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", fmt.Errorf("open %s: %w", p, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func bytesSHA256(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
