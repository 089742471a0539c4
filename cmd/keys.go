package cmd

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/internal/gate"
)

// decider finds who decides and the key that proves it: the key from
// --key, else the keys ssh-agent holds (SSH_AUTH_SOCK), else
// ~/.ssh/id_ed25519; the person from --as, else the people entry of
// --config that lists the key. The run checks the signature against its
// worker's people entries; this only picks what to sign with.
func (g *globals) decider(keyFile, as string) (ssh.Signer, string, error) {
	var people []config.Person
	if g.configPath != "" {
		cfg, err := g.loadConfigLenient(g.configPath)
		if err != nil {
			return nil, "", err
		}
		people = cfg.People
	}
	if as == "" && people == nil {
		return nil, "", errors.New("say who decides: --as NAME (your people entry) or --config with the people entries")
	}
	signers, where, err := g.signers(keyFile)
	if err != nil {
		return nil, "", err
	}
	for _, s := range signers {
		fp := ssh.FingerprintSHA256(s.PublicKey())
		if people == nil {
			return s, as, nil // the run says whether the key is as's
		}
		for _, p := range people {
			if (as == "" || p.Name == as) && slices.ContainsFunc(p.Keys, func(k string) bool { return gate.Fingerprint(k) == fp }) {
				return s, p.Name, nil
			}
		}
	}
	who := "any people entry"
	if as != "" {
		who = "people entry " + as
	}
	return nil, "", fmt.Errorf("no key from %s is listed in %s of %s: add your public key to people[].keys, or pass --key", where, who, g.configPath)
}

// signers are the candidate keys and where they came from.
func (g *globals) signers(keyFile string) ([]ssh.Signer, string, error) {
	if keyFile == "" {
		if sock := g.env.Getenv("SSH_AUTH_SOCK"); sock != "" {
			conn, err := net.Dial("unix", sock)
			if err != nil {
				return nil, "", fmt.Errorf("ssh-agent at SSH_AUTH_SOCK %s: %w (or pass --key)", sock, err)
			}
			// The connection lives as long as the command: signing
			// happens after this returns.
			signers, err := agent.NewClient(conn).Signers()
			if err != nil {
				return nil, "", fmt.Errorf("list ssh-agent's keys: %w", err)
			}
			if len(signers) > 0 {
				return signers, "ssh-agent", nil
			}
		}
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, "", errors.New("no ssh-agent and no home folder: pass --key FILE")
		}
		keyFile = filepath.Join(home, ".ssh", "id_ed25519")
	}
	pem, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, "", fmt.Errorf("read SSH key: %w (pass --key FILE, or load your key into ssh-agent)", err)
	}
	s, err := ssh.ParsePrivateKey(pem)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		return nil, "", fmt.Errorf("SSH key %s has a passphrase: add it to ssh-agent (ssh-add %s) and leave out --key", keyFile, keyFile)
	}
	if err != nil {
		return nil, "", fmt.Errorf("SSH key %s: %w", keyFile, err)
	}
	return []ssh.Signer{s}, keyFile, nil
}
