package serve

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// ListenUnix listens on a unix socket at path, mode 0600, in a directory
// only its owner can enter (created 0700 if missing). A socket file left by
// a killed service (nobody answers on it) is replaced; a live one is an
// error.
func ListenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("serve: socket directory: %w", err)
	}
	if _, err := os.Lstat(path); err == nil {
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("serve: %s: another service answers on it: stop it first, or use another --socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("serve: remove the stale socket %s: %w", path, err)
		}
	}
	// The socket is created with the umask's permissions: make it 0600
	// from the start, not after a window in which others could connect.
	old := syscall.Umask(0o177)
	l, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("serve: listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("serve: %s: %w", path, err)
	}
	return l, nil
}

// ReadToken reads a bearer token from path: one line, at least 16
// characters, in a file others cannot read.
func ReadToken(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("token file %s: mode %v lets others read it: chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	switch {
	case len(tok) < 16:
		return "", fmt.Errorf("token file %s: the token has %d characters, want at least 16 (e.g. head -c 32 /dev/urandom | base64 > %s)", path, len(tok), path)
	case strings.ContainsAny(tok, " \t\r\n"):
		return "", errors.New("token file " + path + ": the token must be one line without spaces")
	}
	return tok, nil
}
