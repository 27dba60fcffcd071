package guest

import (
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"

	"github.com/snapbpf/snapbpf/internal/logging"
)

// Tool is a host command and the Debian package that ships it.
type Tool struct {
	Command string // looked up in PATH, e.g. "mkfs.erofs"
	Package string // e.g. "erofs-utils"
}

// InstallTools installs, with apt, the packages of the tools missing from
// PATH, the way the Makefile's deps target installs QEMU: only when one is
// missing, after an apt-get update. log receives what is installed; nil
// discards it.
func InstallTools(ctx context.Context, log *slog.Logger, tools ...Tool) error {
	var missing []string
	for _, t := range tools {
		if _, err := exec.LookPath(t.Command); err != nil {
			missing = append(missing, t.Package)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	a := &apt{log: logging.Or(log)}
	if err := a.update(ctx, "installing "+strings.Join(missing, " ")); err != nil {
		return err
	}
	args := append([]string{"install", "-y", "-qq", "--no-install-recommends"}, missing...)
	if _, err := a.run(ctx, "", "apt-get", args...); err != nil {
		return fmt.Errorf("install %s (needs root and apt sources; or install them by hand): %w", strings.Join(missing, " "), err)
	}
	for _, t := range tools {
		if _, err := exec.LookPath(t.Command); err != nil {
			return fmt.Errorf("%s still missing after installing %s", t.Command, t.Package)
		}
	}
	return nil
}
