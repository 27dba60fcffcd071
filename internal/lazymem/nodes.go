package lazymem

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/snapbpf/snapbpf/internal/pages"
)

// The mount is read-only and belongs to root: snapshot.Open refuses files
// that anyone else could write.
const (
	dirMode  = syscall.S_IFDIR | 0o555
	fileMode = syscall.S_IFREG | 0o444
)

// dirNode is a read-only directory whose children are added at mount.
type dirNode struct{ fs.Inode }

var _ fs.NodeGetattrer = (*dirNode)(nil)

func (*dirNode) Getattr(_ context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = dirMode
	return 0
}

// constFile is a read-only file held in memory (manifest, state, working
// set: all checked against their digests before the mount).
type constFile struct {
	fs.Inode
	data []byte
}

var (
	_ fs.NodeOpener    = (*constFile)(nil)
	_ fs.NodeReader    = (*constFile)(nil)
	_ fs.NodeGetattrer = (*constFile)(nil)
)

func (*constFile) Open(_ context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR) != 0 {
		return nil, 0, syscall.EROFS
	}
	return nil, openFlags, 0
}

// openFlags keep a file's page cache across opens (the contents never
// change) and ask for no FLUSH at close: nothing is written, and a close
// that waited for the server would never end when it is the serving
// process's own at its exit (killed, its descriptors close in order, the
// mount's /dev/fuse maybe last), leaving a process that cannot be reaped
// and a pidfile that looks alive to the next service.
const openFlags = fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH

func (f *constFile) Read(_ context.Context, _ fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	off = min(off, int64(len(f.data)))
	end := min(off+int64(len(dest)), int64(len(f.data)))
	return fuse.ReadResultData(f.data[off:end]), 0
}

func (f *constFile) Getattr(_ context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = fileMode
	out.Size = uint64(len(f.data))
	return 0
}

// memNode is the memory file: reads wait for the chunks they need.
type memNode struct {
	fs.Inode
	m *Mount
}

var (
	_ fs.NodeOpener    = (*memNode)(nil)
	_ fs.NodeReader    = (*memNode)(nil)
	_ fs.NodeGetattrer = (*memNode)(nil)
)

// Open keeps the page cache (openFlags): FUSE drops a file's cached pages
// at every open otherwise, and then neither the prefetch nor one VM's
// pages would serve the next VM. The contents never change, so the cache is never
// stale. QEMU 7.2 opens guest RAM's file read-write though it maps it
// private (and fails otherwise), so a read-write open is allowed; no
// write reaches the file (memNode has no Write), and truncation is
// refused.
func (*memNode) Open(_ context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_TRUNC != 0 {
		return nil, 0, syscall.EPERM
	}
	return nil, openFlags, 0
}

func (n *memNode) Read(ctx context.Context, _ fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	k, err := n.m.read(ctx, dest, off)
	if err != nil {
		n.m.log.Error("lazymem: read failed", "snapshot", n.m.man.ID, "off", off, "len", len(dest), "err", err)
		return nil, syscall.EIO
	}
	return fuse.ReadResultData(dest[:k]), 0
}

func (n *memNode) Getattr(_ context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = fileMode
	out.Size = uint64(n.m.man.MemSize)
	out.Blocks = uint64(n.m.man.Mem.Size / 512) // its data, as on the node that has it
	return 0
}

var _ fs.NodeLseeker = (*memNode)(nil)

// Lseek answers SEEK_DATA and SEEK_HOLE from the published layout, so that
// whatever walks the file's holes (the prefetch's planning among them)
// sees the holes it has on the node that made it.
func (n *memNode) Lseek(_ context.Context, _ fs.FileHandle, off uint64, whence uint32) (uint64, syscall.Errno) {
	size := uint64(n.m.man.MemSize)
	if off >= size {
		return 0, syscall.ENXIO
	}
	data := n.m.man.Data
	i, in := pages.Search(data, off/pages.Size)
	switch whence {
	case unix.SEEK_DATA:
		if in {
			return off, 0
		}
		if i == len(data) {
			return 0, syscall.ENXIO
		}
		return data[i].Page * pages.Size, 0
	case unix.SEEK_HOLE:
		if !in {
			return off, 0
		}
		return min(data[i].End()*pages.Size, size), 0
	}
	return 0, syscall.EINVAL
}
