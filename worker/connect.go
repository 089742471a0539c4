package worker

import (
	"crypto/tls"
	"fmt"

	"go.temporal.io/sdk/client"

	"github.com/changeops/changeops/config"
)

// ClientOptions are the options that reach the Temporal t names: address,
// namespace and the connection's security. The worker, `changeops setup`
// and every other command dial through it, so all of them connect the same
// way. apiKey is the value of temporal.api_key_env (config.Secrets).
//
// With a tls block the frontend's certificate is verified against its CA
// file (else the system's roots) and the client certificate is presented;
// an API key without a tls block still turns TLS on, with the system's
// roots, as Temporal Cloud requires. The key travels only in the
// credentials; nothing here logs it.
func ClientOptions(t config.Temporal, apiKey string) (client.Options, error) {
	opts := client.Options{HostPort: t.Address, Namespace: t.Namespace}
	if t.APIKeyEnv != "" && apiKey == "" {
		return opts, fmt.Errorf("temporal.api_key_env names %s, which is empty: export the API key in it, or remove the field", t.APIKeyEnv)
	}
	if !t.Secured() && apiKey == "" {
		return opts, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.TLS != nil {
		roots, cert, err := t.TLS.Load()
		if err != nil {
			return opts, err
		}
		tc.RootCAs = roots // nil: the system's
		if cert != nil {
			tc.Certificates = []tls.Certificate{*cert}
		}
		tc.ServerName = t.TLS.ServerName // "": the host of temporal.address
	}
	opts.ConnectionOptions.TLS = tc
	if apiKey != "" {
		opts.Credentials = client.NewAPIKeyStaticCredentials(apiKey)
	}
	return opts, nil
}
