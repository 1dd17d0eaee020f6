package emulator

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// File names inside the state directory.
const (
	caCertName     = "ca.pem"
	caKeyName      = "ca-key.pem"
	serverCertName = "server.pem"
	serverKeyName  = "server-key.pem"
)

// CA is the emulator's local certificate authority. It signs the server
// certificate of the data plane, the API (with APITLS) and the MQTT broker,
// and the device certificates used for mutual TLS to the broker.
type CA struct {
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

// LoadOrCreateCA loads the CA from dir, or creates a new ECDSA P-256 CA there
// (directory 0700, key 0600) when none exists yet.
func LoadOrCreateCA(dir string) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state directory %s: %w", dir, err)
	}
	ca, err := loadCA(dir)
	if err == nil {
		return ca, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return createCA(dir)
}

func loadCA(dir string) (*CA, error) {
	cert, key, err := loadPair(filepath.Join(dir, caCertName), filepath.Join(dir, caKeyName))
	if err != nil {
		return nil, err
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("%s is not a CA certificate: %w", filepath.Join(dir, caCertName), ErrBadState)
	}
	return newCA(dir, cert, key), nil
}

func newCA(dir string, cert *x509.Certificate, key *ecdsa.PrivateKey) *CA {
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{dir: dir, cert: cert, key: key, pool: pool}
}

func createCA(dir string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: "tunnel-emulator local CA", Organization: []string{"tunnel-emulator"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	if err := writePair(filepath.Join(dir, caCertName), filepath.Join(dir, caKeyName), der, key); err != nil {
		return nil, err
	}
	return newCA(dir, cert, key), nil
}

// CertFile is the path of the CA certificate (PEM) that clients should trust.
func (c *CA) CertFile() string { return filepath.Join(c.dir, caCertName) }

// Pool returns a pool holding only the CA certificate.
func (c *CA) Pool() *x509.CertPool { return c.pool }

// ServerCertificate loads the server certificate from the state directory,
// or issues a new one (localhost, 127.0.0.1, ::1) when it is missing, not
// signed by this CA or about to expire.
func (c *CA) ServerCertificate() (tls.Certificate, error) {
	certFile, keyFile := filepath.Join(c.dir, serverCertName), filepath.Join(c.dir, serverKeyName)
	if cert, key, err := loadPair(certFile, keyFile); err == nil && c.valid(cert) {
		return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}, nil
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "localhost"},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, key, err := c.issue(tmpl)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := writePair(certFile, keyFile, der, key); err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("parse server certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

func (c *CA) valid(cert *x509.Certificate) bool {
	_, err := cert.Verify(x509.VerifyOptions{
		Roots:       c.pool,
		DNSName:     "localhost",
		CurrentTime: time.Now().Add(24 * time.Hour),
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	return err == nil
}

// IssueDeviceCert writes a client certificate for thing (CommonName = thing)
// and its key to dir as <thing>.cert.pem and <thing>.private.key, plus the CA
// certificate as ca.pem, for mutual TLS to the embedded broker.
func (c *CA) IssueDeviceCert(thing, dir string) (certFile, keyFile string, err error) {
	if !serviceRe.MatchString(thing) || len(thing) > 128 {
		return "", "", fmt.Errorf("thing name %q must match [a-zA-Z0-9:_-]{1,128}: %w", thing, ErrInvalidArgument)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("create certificate directory %s: %w", dir, err)
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: thing},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, key, err := c.issue(tmpl)
	if err != nil {
		return "", "", err
	}
	certFile, keyFile = filepath.Join(dir, thing+".cert.pem"), filepath.Join(dir, thing+".private.key")
	if err := writePair(certFile, keyFile, der, key); err != nil {
		return "", "", err
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.cert.Raw})
	if err := os.WriteFile(filepath.Join(dir, caCertName), caPEM, 0o644); err != nil {
		return "", "", fmt.Errorf("write CA certificate to %s: %w", dir, err)
	}
	return certFile, keyFile, nil
}

// ClientCertificate issues an in-memory client certificate (CommonName cn),
// used to authenticate to an external broker that trusts this CA.
func (c *CA) ClientCertificate(cn string) (tls.Certificate, error) {
	der, key, err := c.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func (c *CA) issue(tmpl *x509.Certificate) ([]byte, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	now := time.Now()
	tmpl.SerialNumber = randomSerial()
	tmpl.NotBefore = now.Add(-time.Hour)
	tmpl.NotAfter = now.AddDate(2, 0, 0)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		return nil, nil, fmt.Errorf("sign certificate for %s: %w", tmpl.Subject.CommonName, err)
	}
	return der, key, nil
}

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic("crypto/rand failed") // crypto/rand never fails on supported platforms
	}
	return n
}

func loadPair(certFile, keyFile string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", certFile, err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", keyFile, err)
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, nil, fmt.Errorf("%s or %s is not PEM; delete both to regenerate: %w", certFile, keyFile, ErrBadState)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parse %s (delete it to regenerate): %w", certFile, err)
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parse key %s (delete it to regenerate): %w", keyFile, err)
	}
	return cert, key, nil
}

func writePair(certFile, keyFile string, der []byte, key *ecdsa.PrivateKey) error {
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode key: %w", err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return fmt.Errorf("write key %s: %w", keyFile, err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return fmt.Errorf("write certificate %s: %w", certFile, err)
	}
	return nil
}
