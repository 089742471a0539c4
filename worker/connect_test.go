package worker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/internal/testkit/testca"
)

func TestClientOptions(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, err := testca.New(dir, "ca")
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := ca.Issue("changeops")
	if err != nil {
		t.Fatal(err)
	}
	base := config.Temporal{Address: "temporal.example.com:7233", Namespace: "changeops"}
	with := func(tls *config.TemporalTLS, apiKeyEnv string) config.Temporal {
		t := base
		t.TLS, t.APIKeyEnv = tls, apiKeyEnv
		return t
	}

	for _, tc := range []struct {
		name     string
		temporal config.Temporal
		apiKey   string
		// want
		tls, roots, clientCert, creds bool
		serverName                    string
		err                           string
	}{
		{name: "plaintext", temporal: base},
		{name: "API key without a tls block: TLS on, system roots", temporal: with(nil, "TEMPORAL_API_KEY"), apiKey: "k",
			tls: true, creds: true},
		{name: "empty tls block: system roots", temporal: with(&config.TemporalTLS{}, ""), tls: true},
		{name: "mutual TLS", temporal: with(&config.TemporalTLS{CAFile: ca.CertFile, CertFile: cert, KeyFile: key, ServerName: "temporal.internal"}, ""),
			tls: true, roots: true, clientCert: true, serverName: "temporal.internal"},
		{name: "CA, client certificate and API key", temporal: with(&config.TemporalTLS{CAFile: ca.CertFile, CertFile: cert, KeyFile: key}, "K"), apiKey: "k",
			tls: true, roots: true, clientCert: true, creds: true},
		{name: "API key variable empty", temporal: with(nil, "TEMPORAL_API_KEY"),
			err: "temporal.api_key_env names TEMPORAL_API_KEY, which is empty"},
		{name: "CA file without certificates", temporal: with(&config.TemporalTLS{CAFile: key}, ""),
			err: "temporal.tls.ca_file " + key + ": no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts, err := ClientOptions(tc.temporal, tc.apiKey)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if opts.HostPort != base.Address || opts.Namespace != base.Namespace {
				t.Errorf("host %s namespace %s, want %s %s", opts.HostPort, opts.Namespace, base.Address, base.Namespace)
			}
			c := opts.ConnectionOptions.TLS
			if (c != nil) != tc.tls {
				t.Fatalf("TLS %v, want %v", c != nil, tc.tls)
			}
			if (opts.Credentials != nil) != tc.creds {
				t.Errorf("credentials %v, want %v", opts.Credentials != nil, tc.creds)
			}
			if c == nil {
				return
			}
			if c.InsecureSkipVerify || c.MinVersion < tls.VersionTLS12 {
				t.Errorf("skip verify %v, min version %x: want verification, TLS 1.2 or later", c.InsecureSkipVerify, c.MinVersion)
			}
			if (c.RootCAs != nil) != tc.roots || (len(c.Certificates) == 1) != tc.clientCert || c.ServerName != tc.serverName {
				t.Errorf("own roots %v, client certificate %v, server name %q; want %v, %v, %q",
					c.RootCAs != nil, len(c.Certificates) == 1, c.ServerName, tc.roots, tc.clientCert, tc.serverName)
			}
		})
	}
}

// Dial over what ClientOptions builds reaches a frontend that requires a
// client certificate, and sends the API key as a bearer token; the key is
// in no log line.
func TestDialSecured(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, err := testca.New(dir, "ca")
	if err != nil {
		t.Fatal(err)
	}
	serverCert, serverKey, err := ca.Issue("frontend", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	clientCert, clientKey, err := ca.Issue("changeops")
	if err != nil {
		t.Fatal(err)
	}
	frontend := startFrontend(t, ca.CertFile, serverCert, serverKey)

	const apiKey = "api-key-never-logged"
	var logs strings.Builder
	logger := slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	temporal := config.Temporal{Address: frontend.addr, Namespace: "changeops", APIKeyEnv: "TEMPORAL_API_KEY",
		TLS: &config.TemporalTLS{CAFile: ca.CertFile, CertFile: clientCert, KeyFile: clientKey, ServerName: "localhost"}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := Dial(ctx, temporal, apiKey, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	got := frontend.seen()
	if got.auth != "Bearer "+apiKey {
		t.Errorf("authorization %q, want the API key as a bearer token", got.auth)
	}
	if got.client != "changeops" {
		t.Errorf("client certificate %q, want changeops", got.client)
	}

	// Without the client certificate the frontend refuses, and Dial says
	// so when its context ends (it waits for a frontend that is starting).
	noCert := temporal
	noCert.TLS = &config.TemporalTLS{CAFile: ca.CertFile, ServerName: "localhost"}
	short, cancelShort := context.WithTimeout(ctx, 3*time.Second)
	defer cancelShort()
	if c, err := Dial(short, noCert, apiKey, logger, nil); err == nil {
		c.Close()
		t.Error("dial without a client certificate succeeded")
	} else if !strings.Contains(err.Error(), "temporal.address "+frontend.addr) {
		t.Errorf("error %q does not name temporal.address", err)
	}
	if strings.Contains(logs.String(), apiKey) {
		t.Errorf("the API key is in the log:\n%s", logs.String())
	}
}

// frontend is a gRPC server with Temporal's GetSystemInfo, the call a
// client dials with, requiring client certificates of the CA.
type frontend struct {
	workflowservice.UnimplementedWorkflowServiceServer
	addr string
	mu   sync.Mutex
	last struct{ auth, client string }
}

func startFrontend(t *testing.T, caFile, certFile, keyFile string) *frontend {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{pair},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	})))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &frontend{addr: ln.Addr().String()}
	workflowservice.RegisterWorkflowServiceServer(srv, f)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return f
}

func (f *frontend) GetSystemInfo(ctx context.Context, _ *workflowservice.GetSystemInfoRequest) (*workflowservice.GetSystemInfoResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	md, _ := metadata.FromIncomingContext(ctx)
	f.last.auth = strings.Join(md.Get("authorization"), ",")
	if p, ok := peer.FromContext(ctx); ok {
		if info, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(info.State.PeerCertificates) > 0 {
			f.last.client = info.State.PeerCertificates[0].Subject.CommonName
		}
	}
	return &workflowservice.GetSystemInfoResponse{}, nil
}

func (f *frontend) seen() struct{ auth, client string } {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
