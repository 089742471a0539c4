package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// TemporalTLS secures the connection to the Temporal frontend. A tls block,
// even an empty one (`tls: {}`), turns TLS on; the frontend's certificate
// is checked against CAFile, or the system's roots without it. CertFile
// and KeyFile are the client certificate a cluster that requires mutual
// TLS asks for (Temporal Cloud's mTLS namespaces, a self-hosted cluster
// with requireClientAuth). There is deliberately no way to skip
// verification: a frontend that cannot be verified is refused.
type TemporalTLS struct {
	// CAFile holds the PEM certificates of the CAs that sign the
	// frontend's certificate.
	CAFile string `yaml:"ca_file,omitempty"`
	// CertFile and KeyFile are the client certificate and its private key,
	// in PEM; both or neither.
	CertFile string `yaml:"cert_file,omitempty"`
	KeyFile  string `yaml:"key_file,omitempty"`
	// ServerName is the name the frontend's certificate must carry when it
	// is not the host of temporal.address (an IP address, a proxy, a
	// load balancer's name).
	ServerName string `yaml:"server_name,omitempty"`
}

// Secured reports whether changeops reaches Temporal over TLS: with a tls
// block, or with an API key, which Temporal Cloud takes only over TLS.
func (t Temporal) Secured() bool { return t.TLS != nil || t.APIKeyEnv != "" }

// DefaultDeploymentName is the Worker Deployment of temporal.deployment_name.
const DefaultDeploymentName = "changeops"

// Versioned reports whether the workers poll as a version of the Worker
// Deployment (temporal.versioning, on unless set to false).
//
// On is the default for new and existing installs alike: the first
// versioned worker of a deployment that has no current build makes its
// own build current (worker.joinDeployment), and runs started by the
// unversioned workers before it move to that build on their next task,
// replayed through their GetVersion branches as any upgrade was before.
// From then on a change or drift run stays on the build that started it
// (docs/upgrading.md). Off is for a server that does not
// serve Worker Deployments (Temporal server 1.29, which the tests and the
// compose file run, serves them by default) and for going back to
// unversioned workers.
func (t Temporal) Versioned() bool { return t.Versioning == nil || *t.Versioning }

// applyDefaults names the deployment and resolves the tls block's files
// against the config file's folder.
func (t *Temporal) applyDefaults(base string) {
	setDefault(&t.DeploymentName, DefaultDeploymentName)
	if t.TLS == nil {
		return
	}
	t.TLS.CAFile = absFrom(base, t.TLS.CAFile)
	t.TLS.CertFile = absFrom(base, t.TLS.CertFile)
	t.TLS.KeyFile = absFrom(base, t.TLS.KeyFile)
}

// maxVersionPart is Temporal's limit on a deployment name or build ID.
const maxVersionPart = 255

func (t *Temporal) validate(bad func(string, ...any)) {
	// Temporal reserves "." in deployment names (it separates the name
	// from the build ID in version strings).
	switch {
	case strings.ContainsAny(t.DeploymentName, ". \t\n"):
		bad("temporal.deployment_name %q has a dot or a space: name the Worker Deployment with letters, digits, - and _ (default %s)", t.DeploymentName, DefaultDeploymentName)
	case len(t.DeploymentName) > maxVersionPart:
		bad("temporal.deployment_name is %d bytes long: Temporal takes at most %d", len(t.DeploymentName), maxVersionPart)
	}
	switch {
	case strings.ContainsAny(t.BuildID, " \t\n"):
		bad("temporal.build_id %q has a space: use the build's version or commit, like 3f2a91c4e5d6 or v1.4.2", t.BuildID)
	case len(t.BuildID) > maxVersionPart:
		bad("temporal.build_id is %d bytes long: Temporal takes at most %d", len(t.BuildID), maxVersionPart)
	case t.BuildID == "__unversioned__":
		bad("temporal.build_id %q is Temporal's name for unversioned workers: set temporal.versioning: false instead", t.BuildID)
	}
	if t.TLS == nil {
		return
	}
	if _, _, err := t.TLS.Load(); err != nil {
		bad("%w", err)
	}
}

// Load reads the block's files: the pool of CAs to verify the frontend
// with (nil: the system's roots) and the client certificate (nil: none).
// Errors name the field, the file and the fix. Validate loads them once to
// refuse a bad config early; the dialer loads them again, so a renewed
// certificate is picked up when the process restarts.
func (t *TemporalTLS) Load() (*x509.CertPool, *tls.Certificate, error) {
	var errs []error
	var roots *x509.CertPool
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("temporal.tls.ca_file %s: %w: point it at the PEM file of the CA that signed the frontend's certificate", t.CAFile, fileError(err)))
		default:
			roots = x509.NewCertPool()
			if !roots.AppendCertsFromPEM(pem) {
				errs = append(errs, fmt.Errorf("temporal.tls.ca_file %s: no PEM certificate in it: give the CA certificate(s) that signed the frontend's, in PEM (-----BEGIN CERTIFICATE-----)", t.CAFile))
			}
		}
	}
	var cert *tls.Certificate
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		errs = append(errs, fmt.Errorf("temporal.tls.cert_file is set but temporal.tls.key_file is not: set both (the client certificate and its private key) or neither"))
	case t.CertFile == "" && t.KeyFile != "":
		errs = append(errs, fmt.Errorf("temporal.tls.key_file is set but temporal.tls.cert_file is not: set both (the client certificate and its private key) or neither"))
	case t.CertFile != "":
		certPEM, certErr := os.ReadFile(t.CertFile)
		if certErr != nil {
			errs = append(errs, fmt.Errorf("temporal.tls.cert_file %s: %w: point it at the client certificate, in PEM", t.CertFile, fileError(certErr)))
		}
		keyPEM, keyErr := os.ReadFile(t.KeyFile)
		if keyErr != nil {
			errs = append(errs, fmt.Errorf("temporal.tls.key_file %s: %w: point it at the client certificate's private key, in PEM", t.KeyFile, fileError(keyErr)))
		}
		if certErr == nil && keyErr == nil {
			// The error names what is wrong (no PEM data, a key that does
			// not match), never the key itself.
			pair, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				errs = append(errs, fmt.Errorf("temporal.tls.cert_file %s and key_file %s are not a client certificate and its key: %w: give the PEM certificate and the private key it was issued for", t.CertFile, t.KeyFile, err))
			} else {
				cert = &pair
			}
		}
	}
	if len(errs) > 0 {
		return nil, nil, errors.Join(errs...)
	}
	return roots, cert, nil
}

// fileError shortens an *fs.PathError, whose path the caller names
// already: "cannot open it: no such file or directory".
func fileError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("cannot %s it: %w", pe.Op, pe.Err)
	}
	return err
}
