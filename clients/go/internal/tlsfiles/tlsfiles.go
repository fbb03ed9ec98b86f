// Package tlsfiles reads the PEM files of a TLS set-up, with errors that name
// the file at fault. Shared by the client (couponrank) and the fake server
// (couponranktest).
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// CertPool returns a pool holding the PEM certificates of file (a CA bundle).
// A file holding no certificate is an error.
func CertPool(what, file string) (*x509.CertPool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s %s: no PEM certificate in the file", what, file)
	}
	return pool, nil
}

// KeyPair reads a PEM certificate (chain) and its PEM private key.
func KeyPair(what, certFile, keyFile string) (tls.Certificate, error) {
	if certFile == "" || keyFile == "" {
		return tls.Certificate{}, errors.New(what + ": both a certificate file and a key file are needed")
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s certificate: %w", what, err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s key: %w", what, err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s %s with key %s: %w", what, certFile, keyFile, err)
	}
	return cert, nil
}
