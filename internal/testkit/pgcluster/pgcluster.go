// Package pgcluster runs the production topology on one machine, without a
// container engine: a PostgreSQL server from Debian's packages, the
// Temporal schema applied by temporal-sql-tool, and the Temporal server
// (every service in one process) persisting to it. The test of the
// production path runs changeops workers against it; docker-compose.yml
// deploys the same versions.
package pgcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"
)

// Options say where the binaries are and where the cluster keeps its data.
type Options struct {
	// Bin holds temporal-server and temporal-sql-tool (scripts/toolchain
	// builds them).
	Bin string
	// Dir receives the database files, the server's configuration and
	// both logs (postgres.log, temporal.log).
	Dir string
	// Password is the temporal database role's password.
	Password string
	// TLS, when set, serves the frontend over TLS only and requires a
	// client certificate signed by TLS.CAFile (mutual TLS), as a cluster
	// open to a network would; the services' own connections (internode,
	// the system worker's calls to the frontend) use TLS too.
	TLS *TLS
}

// TLS are the PEM files of a cluster with mutual TLS.
type TLS struct {
	// CAFile is the CA that signed CertFile and the clients' certificates
	// the frontend accepts.
	CAFile string
	// CertFile and KeyFile are the services' certificate, for 127.0.0.1
	// and localhost. They present it to clients and to each other, so it
	// must allow both server and client authentication.
	CertFile, KeyFile string
}

// Cluster is a running PostgreSQL and Temporal server.
type Cluster struct {
	opts     Options
	pgBin    string
	pgPort   int
	frontend int
	postgres *process
	temporal *process
}

// Start brings up PostgreSQL, creates and migrates Temporal's two
// databases, and starts the Temporal server; it returns once the frontend
// accepts connections. Stop undoes it.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	if opts.Password == "" {
		opts.Password = "temporal"
	}
	for _, b := range []string{"temporal-server", "temporal-sql-tool"} {
		if _, err := os.Stat(filepath.Join(opts.Bin, b)); err != nil {
			return nil, fmt.Errorf("%s not found in %s: run scripts/toolchain", b, opts.Bin)
		}
	}
	ports, err := freePorts(10)
	if err != nil {
		return nil, err
	}
	c := &Cluster{opts: opts, pgPort: ports[0], frontend: ports[1]}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	if err := c.startPostgres(ctx); err != nil {
		return nil, err
	}
	if err := c.migrate(ctx); err != nil {
		return nil, err
	}
	if err := c.startTemporal(ctx, ports[1:]); err != nil {
		return nil, err
	}
	return c, nil
}

// Address is the Temporal frontend's host:port.
func (c *Cluster) Address() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(c.frontend)) }

// PostgresPort is where PostgreSQL listens on 127.0.0.1.
func (c *Cluster) PostgresPort() int { return c.pgPort }

// SQL runs statements in database db as the temporal role and returns
// what psql printed (unaligned, tuples only): for creating a database of
// one's own (a Pulumi state backend) and reading it back.
func (c *Cluster) SQL(ctx context.Context, db, statements string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.pgBin, "psql"), "-h", "127.0.0.1", "-p", strconv.Itoa(c.pgPort),
		"-U", "temporal", "-d", db, "-v", "ON_ERROR_STOP=1", "-A", "-t", "-c", statements)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+c.opts.Password)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("psql on %s: %w: %s", db, err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// Stop stops the Temporal server, then PostgreSQL.
func (c *Cluster) Stop() {
	if c.temporal != nil {
		c.temporal.stop(syscall.SIGTERM, 30*time.Second) // a graceful stop
	}
	if c.postgres != nil {
		c.postgres.stop(syscall.SIGINT, 30*time.Second) // PostgreSQL's fast shutdown
	}
}

// postgresBin finds the newest installed PostgreSQL's programs.
func postgresBin() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	if len(dirs) == 0 {
		return "", errors.New("PostgreSQL is not installed (/usr/lib/postgresql/*/bin): run scripts/toolchain, which installs Debian's postgresql package")
	}
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi < vj
	})
	return dirs[len(dirs)-1], nil
}

// startPostgres initialises a database cluster in Dir/postgres and starts
// it on 127.0.0.1. PostgreSQL refuses to run as root, so as root it runs
// as the postgres account the Debian package creates.
func (c *Cluster) startPostgres(ctx context.Context) error {
	bin, err := postgresBin()
	if err != nil {
		return err
	}
	c.pgBin = bin
	data := filepath.Join(c.opts.Dir, "postgres")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return err
	}
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return fmt.Errorf("run PostgreSQL as root's stand-in: %w (install Debian's postgresql package)", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(data, uid, gid); err != nil {
			return err
		}
		// The account must reach the folder: open the path to it, within
		// the temporary folder only (a test's folders are 0700).
		tmp := filepath.Clean(os.TempDir()) + string(filepath.Separator)
		for d := filepath.Clean(c.opts.Dir); strings.HasPrefix(d, tmp); d = filepath.Dir(d) {
			if st, err := os.Stat(d); err == nil && st.Mode().Perm()&0o001 == 0 {
				if err := os.Chmod(d, st.Mode().Perm()|0o011); err != nil {
					return err
				}
			}
		}
	}
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres",
		// Passwords over TCP, as on a real server; the superuser comes in
		// through the socket.
		"--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb %s: %w\n%s", data, err, out)
	}
	c.postgres, err = startProcess(filepath.Join(c.opts.Dir, "postgres.log"), cred, filepath.Join(bin, "postgres"),
		"-D", data, "-p", strconv.Itoa(c.pgPort), "-k", data,
		"-c", "listen_addresses=127.0.0.1", "-c", "max_connections=300", "-c", "fsync=off")
	if err != nil {
		return err
	}
	if err := c.postgres.waitListening(ctx, net.JoinHostPort("127.0.0.1", strconv.Itoa(c.pgPort)), time.Minute); err != nil {
		return err
	}
	// A role for Temporal, as a managed PostgreSQL would have.
	psql := exec.CommandContext(ctx, filepath.Join(bin, "psql"), "-h", data, "-p", strconv.Itoa(c.pgPort), "-U", "postgres", "-v", "ON_ERROR_STOP=1",
		"-c", fmt.Sprintf("CREATE ROLE temporal LOGIN CREATEDB PASSWORD '%s'", strings.ReplaceAll(c.opts.Password, "'", "''")))
	// The server may accept connections before it finishes starting.
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := psql.CombinedOutput()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || !bytes.Contains(out, []byte("starting up")) {
			return fmt.Errorf("create role temporal: %w\n%s", err, out)
		}
		time.Sleep(200 * time.Millisecond)
		psql = exec.CommandContext(ctx, psql.Path, psql.Args[1:]...)
	}
}

// migrate creates Temporal's databases and brings their schemas to the
// server's version with the embedded schemas of temporal-sql-tool, as the
// auto-setup image does.
func (c *Cluster) migrate(ctx context.Context) error {
	for _, db := range []struct{ name, schema string }{
		{"temporal", "postgresql/v12/temporal"},
		{"temporal_visibility", "postgresql/v12/visibility"},
	} {
		for _, step := range [][]string{
			{"create-database"},
			{"setup-schema", "-v", "0.0"},
			{"update-schema", "--schema-name", db.schema},
		} {
			args := append([]string{"--plugin", "postgres12", "--endpoint", "127.0.0.1", "--port", strconv.Itoa(c.pgPort),
				"--user", "temporal", "--password", c.opts.Password, "--database", db.name}, step...)
			cmd := exec.CommandContext(ctx, filepath.Join(c.opts.Bin, "temporal-sql-tool"), args...)
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("temporal-sql-tool %s on database %s: %w\n%s", step[0], db.name, err, out)
			}
		}
	}
	return nil
}

// startTemporal writes the server's configuration (every service in one
// process, on the given ports) and starts it.
func (c *Cluster) startTemporal(ctx context.Context, ports []int) error {
	dir := filepath.Join(c.opts.Dir, "temporal")
	if err := os.MkdirAll(filepath.Join(dir, "config"), 0o755); err != nil {
		return err
	}
	var b bytes.Buffer
	err := serverConfig.Execute(&b, map[string]any{
		"PGPort": c.pgPort, "Password": c.opts.Password, "Ports": ports, "TLS": c.opts.TLS,
		"DynamicConfig": filepath.Join(dir, "config", "dynamicconfig.yaml"),
	})
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "config", "development.yaml"), b.Bytes(), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "config", "dynamicconfig.yaml"), []byte(dynamicConfig), 0o644); err != nil {
		return err
	}
	c.temporal, err = startProcess(filepath.Join(c.opts.Dir, "temporal.log"), nil, filepath.Join(c.opts.Bin, "temporal-server"),
		"--root", dir, "--config", "config", "--env", "development", "--allow-no-auth", "start")
	if err != nil {
		return err
	}
	return c.temporal.waitListening(ctx, c.Address(), 2*time.Minute)
}

// dynamicConfig: search attributes registered by `changeops setup` are
// usable at once rather than after the cache's refresh.
const dynamicConfig = `system.forceSearchAttributesCacheRefreshOnRead:
  - value: true
`

var serverConfig = template.Must(template.New("development.yaml").Parse(`log:
  stdout: true
  level: warn
persistence:
  defaultStore: default
  visibilityStore: visibility
  numHistoryShards: 4
  datastores:
    default:
      sql:
        pluginName: postgres12
        databaseName: temporal
        connectAddr: "127.0.0.1:{{.PGPort}}"
        connectProtocol: tcp
        user: temporal
        password: "{{.Password}}"
        maxConns: 20
        maxIdleConns: 20
        maxConnLifetime: 1h
    visibility:
      sql:
        pluginName: postgres12
        databaseName: temporal_visibility
        connectAddr: "127.0.0.1:{{.PGPort}}"
        connectProtocol: tcp
        user: temporal
        password: "{{.Password}}"
        maxConns: 10
        maxIdleConns: 10
        maxConnLifetime: 1h
global:
  membership:
    maxJoinDuration: 30s
    broadcastAddress: 127.0.0.1
{{- with .TLS}}
  # Mutual TLS everywhere: the frontend takes only clients with a
  # certificate of the CA; the services present the same certificate to
  # each other, and the system worker to the frontend (without a client
  # certificate of its own it could not reach the frontend either).
  tls:
    internode:
      server: &server
        certFile: "{{.CertFile}}"
        keyFile: "{{.KeyFile}}"
        requireClientAuth: true
        clientCaFiles: ["{{.CAFile}}"]
      client: &client
        serverName: localhost
        rootCaFiles: ["{{.CAFile}}"]
    frontend:
      server: *server
      client: *client
    systemWorker:
      certFile: "{{.CertFile}}"
      keyFile: "{{.KeyFile}}"
      client: *client
{{- end}}
services:
  frontend:
    rpc: {grpcPort: {{index .Ports 0}}, membershipPort: {{index .Ports 1}}, httpPort: {{index .Ports 2}}, bindOnLocalHost: true}
  matching:
    rpc: {grpcPort: {{index .Ports 3}}, membershipPort: {{index .Ports 4}}, bindOnLocalHost: true}
  history:
    rpc: {grpcPort: {{index .Ports 5}}, membershipPort: {{index .Ports 6}}, bindOnLocalHost: true}
  worker:
    rpc: {grpcPort: {{index .Ports 7}}, membershipPort: {{index .Ports 8}}, bindOnLocalHost: true}
clusterMetadata:
  enableGlobalNamespace: false
  failoverVersionIncrement: 10
  masterClusterName: active
  currentClusterName: active
  clusterInformation:
    active:
      enabled: true
      initialFailoverVersion: 1
      rpcName: frontend
      rpcAddress: "127.0.0.1:{{index .Ports 0}}"
dcRedirectionPolicy:
  policy: noop
dynamicConfigClient:
  filepath: "{{.DynamicConfig}}"
  pollInterval: 10s
`))

// freePorts finds n distinct free ports below 32768: Temporal's SQL schema
// keeps membership ports in a smallint column, so the kernel's ephemeral
// ports (32768 and up) make the server fail at start-up.
func freePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for tries := 0; len(ports) < n; tries++ {
		if tries > 1000 {
			return nil, errors.New("no free ports between 20000 and 32767 on 127.0.0.1")
		}
		port := 20000 + rand.IntN(12768)
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		lns = append(lns, ln)
		ports = append(ports, port)
	}
	return ports, nil
}
