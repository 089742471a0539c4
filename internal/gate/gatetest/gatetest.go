// Package gatetest gives tests and benchmarks people with SSH keys. The
// keys derive from the person's name, so a test and the worker processes
// it starts agree on them without sharing files. Never for real people.
package gatetest

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/pem"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/changeops/changeops/config"
)

func private(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("changeops test key " + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

// Signer is name's test key.
func Signer(name string) ssh.Signer {
	s, err := ssh.NewSignerFromKey(private(name))
	if err != nil {
		panic(err) // an ed25519 key is always a valid signer
	}
	return s
}

// Person is a people entry for name with its test key; emails link it to
// the commits it writes.
func Person(name string, emails ...string) config.Person {
	key := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(Signer(name).PublicKey())))
	return config.Person{Name: name, Emails: emails, Keys: []string{key}}
}

// PrivateKeyPEM is name's key as an OpenSSH private key file, for
// `changeops approve --key`.
func PrivateKeyPEM(name string) []byte {
	b, err := ssh.MarshalPrivateKey(private(name), "")
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(b)
}
