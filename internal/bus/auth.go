package bus

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// credsOption authenticates a connection with path: NATS user credentials
// (a JWT and its seed) or a bare nkey user seed.
func credsOption(path string) (nats.Option, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("bus: --nats-creds: %w", err)
	}
	if bytes.Contains(b, []byte("BEGIN NATS USER JWT")) {
		return nats.UserCredentials(path), nil
	}
	o, err := nats.NkeyOptionFromSeed(path)
	if err != nil {
		return nil, fmt.Errorf("bus: --nats-creds %s: neither user credentials nor an nkey seed: %w", path, err)
	}
	return o, nil
}

// seedPublicKey is the public key of the nkey user seed in path.
func seedPublicKey(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("bus: --nats-creds: %w", err)
	}
	var kp nkeys.KeyPair
	if t := bytes.TrimSpace(b); bytes.HasPrefix(t, []byte("S")) {
		kp, err = nkeys.FromSeed(t)
	} else {
		kp, err = nkeys.ParseDecoratedNKey(b)
	}
	if err != nil {
		return "", fmt.Errorf("bus: --nats-creds %s: the embedded cluster server authenticates nodes by nkey; want a user seed (SU...; make one with NewUserSeed or nk -gen user): %w", path, err)
	}
	defer kp.Wipe()
	pub, err := kp.PublicKey()
	if err != nil {
		return "", fmt.Errorf("bus: --nats-creds %s: %w", path, err)
	}
	if !nkeys.IsValidPublicUserKey(pub) {
		return "", fmt.Errorf("bus: --nats-creds %s holds a %c key; want a user seed (SU...)", path, pub[0])
	}
	return pub, nil
}

func nkeysUserKey(k string) bool { return nkeys.IsValidPublicUserKey(k) }

// NewUserSeed returns a new nkey user seed (SU...) and its public key
// (U...): the identity of a node or client of a cluster.
func NewUserSeed() (seed []byte, public string, err error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, "", err
	}
	defer kp.Wipe()
	s, err := kp.Seed()
	if err != nil {
		return nil, "", err
	}
	seed = append([]byte(nil), s...) // Wipe zeroes kp's own copy
	public, err = kp.PublicKey()
	return seed, public, err
}

func (t TLSFiles) pair() (tls.Certificate, *x509.CertPool, error) {
	cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("bus: --nats-tls-cert/--nats-tls-key: %w", err)
	}
	pool, err := t.caPool()
	return cert, pool, err
}

func (t TLSFiles) caPool() (*x509.CertPool, error) {
	pem, err := os.ReadFile(t.CA)
	if err != nil {
		return nil, fmt.Errorf("bus: --nats-tls-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("bus: --nats-tls-ca %s: no PEM certificate in it", t.CA)
	}
	return pool, nil
}

// serverConfig is the client port's TLS: clients verify the server; they
// authenticate with nkeys, a client certificate is verified if given.
func (t TLSFiles) serverConfig() (*tls.Config, error) {
	cert, pool, err := t.pair()
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.VerifyClientCertIfGiven,
		MinVersion:   tls.VersionTLS12,
	}, nil
}

// routeConfig is the route port's TLS, both ways: a peer server is
// authenticated by a certificate the CA signed, and this server presents
// its own when it connects to a peer.
func (t TLSFiles) routeConfig() (*tls.Config, error) {
	cert, pool, err := t.pair()
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		RootCAs:      pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}, nil
}

// clientConfig verifies the servers of an external cluster against CA
// (system roots if none) and presents Cert if given.
func (t TLSFiles) clientConfig() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.CA != "" {
		pool, err := t.caPool()
		if err != nil {
			return nil, err
		}
		tc.RootCAs = pool
	}
	if t.Cert != "" || t.Key != "" {
		cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
		if err != nil {
			return nil, fmt.Errorf("bus: --nats-tls-cert/--nats-tls-key: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
