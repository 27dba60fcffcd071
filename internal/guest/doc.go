// Package guest builds the image a snapbpf microVM boots: a Debian cloud
// kernel taken from its apt package, and an initramfs whose /init is the
// snapbpf agent, carrying the virtio modules the agent loads at start.
//
// Everything is done from Go except fetching the package (apt-get download),
// so the build needs neither dpkg nor cpio, and its output is deterministic:
// the same package and agent give byte-identical files and digests.
package guest
