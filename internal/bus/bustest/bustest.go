// Package bustest makes NATS clusters of embedded servers for tests, on
// loopback, authenticated (nkeys) and encrypted (TLS from a CA made for the
// test) as bus requires of any server that listens.
package bustest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/internal/bus"
)

// Cluster returns the configurations of n embedded servers routed to one
// another on 127.0.0.1, each with its own store under a test directory,
// ports chosen free, one CA, one certificate and one nkey per node.
func Cluster(t testing.TB, n int) []bus.Config {
	t.Helper()
	dir := t.TempDir()
	ca := newCA(t, dir)
	clientPorts, routePorts := FreePorts(t, n), FreePorts(t, n)
	seeds := make([]string, n)
	pubs := make([]string, n)
	for i := range n {
		seed, pub, err := bus.NewUserSeed()
		if err != nil {
			t.Fatal(err)
		}
		seeds[i], pubs[i] = filepath.Join(dir, fmt.Sprintf("node%d.nk", i)), pub
		write(t, seeds[i], seed)
	}
	cfgs := make([]bus.Config, n)
	for i := range n {
		var peers []string
		for j := range n {
			if j != i {
				peers = append(peers, fmt.Sprintf("127.0.0.1:%d", routePorts[j]))
			}
		}
		cert, key := ca.issue(t, dir, fmt.Sprintf("node%d", i))
		cfgs[i] = bus.Config{
			Dir:   filepath.Join(dir, fmt.Sprintf("node%d", i), "nats"),
			Name:  fmt.Sprintf("node%d", i),
			Creds: seeds[i],
			TLS:   bus.TLSFiles{Cert: cert, Key: key, CA: ca.path},
			Cluster: &bus.Cluster{
				Name:        "test",
				Listen:      fmt.Sprintf("127.0.0.1:%d", clientPorts[i]),
				RouteListen: fmt.Sprintf("127.0.0.1:%d", routePorts[i]),
				Peers:       peers,
				Users:       pubs,
			},
			ReadyTimeout: 60 * time.Second,
		}
	}
	return cfgs
}

// Open opens every configuration at once (a cluster's JetStream needs a
// majority up) and closes them at the test's end.
func Open(t testing.TB, cfgs []bus.Config) []*bus.Bus {
	t.Helper()
	bs := make([]*bus.Bus, len(cfgs))
	errs := make([]error, len(cfgs))
	var wg sync.WaitGroup
	for i, c := range cfgs {
		wg.Go(func() { bs[i], errs[i] = bus.Open(context.Background(), c) })
	}
	wg.Wait()
	for i, b := range bs {
		if b != nil {
			t.Cleanup(func() { b.Close() })
		}
		if errs[i] != nil {
			t.Fatalf("open node %d: %v", i, errs[i])
		}
	}
	return bs
}

// FreePorts returns n TCP ports free on 127.0.0.1 a moment ago.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, n)
	ls := make([]net.Listener, n)
	for i := range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls[i], ports[i] = l, l.Addr().(*net.TCPAddr).Port
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	path string
}

func newCA(t testing.TB, dir string) *ca {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "snapbpf test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	c := &ca{cert: cert, key: key, path: filepath.Join(dir, "ca.pem")}
	write(t, c.path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	return c
}

// issue makes a certificate for 127.0.0.1 good for both ends of a TLS
// connection (a route is both).
func (c *ca) issue(t testing.TB, dir, name string) (certPath, keyPath string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	write(t, certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	write(t, keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
	return certPath, keyPath
}

func write(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
