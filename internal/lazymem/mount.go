package lazymem

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/snapbpf/snapbpf/internal/procfs"
	"github.com/snapbpf/snapbpf/internal/snapstore"
)

// rootNode is the snapshot directory: the memory file and the small files.
type rootNode struct {
	dirNode
	m     *Mount
	files map[string][]byte // slash-separated name -> contents
}

var _ fs.NodeOnAdder = (*rootNode)(nil)

func (r *rootNode) OnAdd(ctx context.Context) {
	r.AddChild("mem", r.NewPersistentInode(ctx, &memNode{m: r.m}, fs.StableAttr{Mode: syscall.S_IFREG}), false)
	for name, data := range r.files {
		parent := &r.Inode
		dir, base := filepath.Split(name)
		for _, d := range strings.Split(strings.Trim(dir, "/"), "/") {
			if d == "" {
				continue
			}
			child := parent.GetChild(d)
			if child == nil {
				child = parent.NewPersistentInode(ctx, &dirNode{}, fs.StableAttr{Mode: syscall.S_IFDIR})
				parent.AddChild(d, child, false)
			}
			parent = child
		}
		parent.AddChild(base, parent.NewPersistentInode(ctx, &constFile{data: data}, fs.StableAttr{Mode: syscall.S_IFREG}), false)
	}
}

// mount mounts the snapshot directory at m.path and widens its readahead.
func (m *Mount) mount(files map[string][]byte) error {
	// Nothing under the mount ever changes: cache names and attributes
	// for as long as it lasts.
	forever := 24 * time.Hour
	root := &rootNode{m: m, files: files}
	server, err := fs.Mount(m.path, root, &fs.Options{
		EntryTimeout: &forever, AttrTimeout: &forever,
		MountOptions: fuse.MountOptions{
			FsName: "snapbpf:" + m.man.ID, Name: fsName,
			// mount(2) itself: snapbpf runs as root, and a host need not
			// have fusermount.
			DirectMountStrict: true,
			// Not read-only: QEMU 7.2 opens guest RAM's file read-write
			// even to map it private, and fails on EROFS. No writes
			// reach the files (none implements Write).
			DirectMountFlags: unix.MS_NOSUID | unix.MS_NODEV,
			// One READ carries up to a chunk. (1 MiB READs would not
			// fit a pipe of the default maximum size, 1 MiB, with their
			// header, and go-fuse's splice would fail and complain.)
			MaxWrite: snapstore.DefaultChunkSize,
			// Readahead requests are asynchronous; FUSE's default of 12
			// in flight would queue a prefetch's requests behind one
			// another while each waits on its chunk.
			MaxBackground: 64,
			DisableXAttrs: true,
			Logger:        slog.NewLogLogger(m.log.Handler(), slog.LevelDebug),
		},
	})
	if err != nil {
		return fmt.Errorf("lazymem: mount %s at %s: %w (FUSE needs root and /dev/fuse)", m.man.ID, m.path, err)
	}
	m.server = server
	if err := setReadahead(m.path, ReadAheadKB); err != nil {
		m.log.Warn("lazymem: readahead stays at FUSE's default", "mount", m.path, "err", err)
	}
	m.log.Info("lazymem: mounted", "snapshot", m.man.ID, "mount", m.path)
	return nil
}

// setReadahead sets the readahead window of the file system mounted at
// path (its backing device info, /sys/class/bdi/MAJ:MIN). A file copies the
// window when it is opened, so this must come before anyone opens one.
func setReadahead(path string, kb int) error {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return err
	}
	knob := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	return os.WriteFile(knob, []byte(strconv.Itoa(kb)), 0)
}

// unmountWait bounds the wait for the FUSE server to end after a detached
// unmount: it ends when the last file of the mount is closed.
const unmountWait = 10 * time.Second

func (m *Mount) unmount() error {
	if err := m.server.Unmount(); err == nil {
		m.log.Info("lazymem: unmounted", "snapshot", m.man.ID, "mount", m.path)
		return nil
	}
	// Busy: detach it from the tree now; it goes when its files close.
	if err := unix.Unmount(m.path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("lazymem: unmount %s: %w", m.path, err)
	}
	done := make(chan struct{})
	go func() {
		m.server.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(unmountWait):
		m.log.Warn("lazymem: detached, but its files are still open", "mount", m.path)
	}
	return nil
}

// Clean unmounts every lazymem mount under dir: what a process killed
// while serving left behind (such a mount answers every access with
// ENOTCONN). It returns the mount points it removed.
func Clean(dir string) ([]string, error) {
	ps, err := MountsUnder(dir)
	if err != nil {
		return nil, err
	}
	var gone []string
	var errs []error
	// Deepest first, so that nested mounts go before their parents.
	for i := len(ps) - 1; i >= 0; i-- {
		if err := unix.Unmount(ps[i], unix.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Errorf("lazymem: unmount stale %s: %w", ps[i], err))
			continue
		}
		gone = append(gone, ps[i])
	}
	return gone, errors.Join(errs...)
}

// MountsUnder lists the lazymem mounts below dir, in the order they were
// mounted.
func MountsUnder(dir string) ([]string, error) {
	dir = filepath.Clean(dir)
	ms, err := procfs.Mounts()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range ms {
		if m.FSType == FSType && strings.HasPrefix(m.Point, dir+"/") {
			out = append(out, m.Point)
		}
	}
	return out, nil
}
