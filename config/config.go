// Package config holds changeops' one typed configuration: loaded from YAML,
// defaulted, validated with errors that name the field and the fix, and with
// secrets resolved from the environment (never from the YAML itself).
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/bmatcuk/doublestar/v4"
	"gopkg.in/yaml.v3"
)

// MaxBatch bounds stacks[].batch: a batch's members are listed in the
// grant that starts it, and one bisection takes at most log2(MaxBatch)
// extra ups.
const MaxBatch = 100

// Approval policies.
const (
	ApprovalManual = "manual"
	// ApprovalPullRequest: approvals on the forge's pull request count
	// when the deployed plan is the previewed one; else as manual.
	ApprovalPullRequest   = "pull-request"
	ApprovalAuto          = "auto"
	ApprovalOnDestructive = "on-destructive"
)

// Config is the whole of changeops.yaml.
type Config struct {
	Repo Repo `yaml:"repo"`
	// Repos are more repositories, each named; stacks pick one with
	// stacks[].repo (default: the repo block).
	Repos    []Repo   `yaml:"repos"`
	Temporal Temporal `yaml:"temporal"`
	Pulumi   Pulumi   `yaml:"pulumi"`
	Stacks   []Stack  `yaml:"stacks"`
	// People link each approver's identities (Slack, emails, git names,
	// SSH keys): decisions are authenticated as a person, and four eyes
	// compares every identity of that person with the commit's.
	People []Person `yaml:"people"`
	// Groups name sets of people that policies' require asks approvals
	// from (config/policy.go).
	Groups []Group `yaml:"groups"`
	// Policy is the Rego policies every plan is judged by.
	Policy   Policy   `yaml:"policy"`
	Slack    Slack    `yaml:"slack"`
	HTTP     HTTP     `yaml:"http"`
	Webhooks Webhooks `yaml:"webhooks"`
	Windows  []Window `yaml:"windows"` // when stacks may apply (only the apply waits): config/windows.go
	Log      Log      `yaml:"log"`
	// DataDir holds the git cache and workspaces. Relative paths in the file
	// are resolved against the file's folder.
	DataDir string `yaml:"data_dir"`
	// Secrets are the resolved values of every *_env field, filled by Load
	// from the environment. Never serialised.
	Secrets Secrets `yaml:"-"`
}

// Repo is a tracked infrastructure repository.
type Repo struct {
	// Name identifies an entry of repos; the repo block has none.
	Name         string   `yaml:"name"`
	URL          string   `yaml:"url"`
	Branch       string   `yaml:"branch"`
	PollInterval Duration `yaml:"poll_interval"`
	UsernameEnv  string   `yaml:"username_env"`
	PasswordEnv  string   `yaml:"password_env"`
	// AuthorName and AuthorEmail sign the commits changeops makes (reverts).
	AuthorName  string `yaml:"author_name"`
	AuthorEmail string `yaml:"author_email"`
	// Initial is what a branch's first poll does with its head: baseline
	// (deploy only later commits) or deploy (run the head once too).
	Initial string `yaml:"initial"`
	// OnRewrite is what a force push that drops seen commits does: hold
	// (deploy nothing until `changeops ack-rewrite`) or continue (resume from
	// the new head at once). Either way it is reported.
	OnRewrite string `yaml:"on_rewrite"`
	// Forge is where the repository's pull requests are, for previews;
	// nil: no previews.
	Forge *Forge `yaml:"forge"`
}

// Temporal says where the Temporal frontend is.
type Temporal struct {
	Address   string `yaml:"address"`
	Namespace string `yaml:"namespace"`
	TaskQueue string `yaml:"task_queue"`
	// UIURL is the Temporal Web UI base, used for links in notifications.
	UIURL string `yaml:"ui_url"`
	// WorkerStopTimeout is the grace period of a stopping worker (SIGTERM,
	// Ctrl-C): it stops polling at once and lets running activities (an
	// up, a verification) finish for this long before cancelling them.
	WorkerStopTimeout Duration `yaml:"worker_stop_timeout"`
	// TLS secures the connection (config/temporal.go); nil is plaintext,
	// unless APIKeyEnv is set.
	TLS *TemporalTLS `yaml:"tls"`
	// APIKeyEnv names the variable holding a Temporal Cloud API key, sent
	// with every call; it turns TLS on, with the system's roots unless the
	// tls block names a CA.
	APIKeyEnv string `yaml:"api_key_env"`
	// DeploymentName is the Worker Deployment the workers register under;
	// each build of changeops is one of its versions (config/temporal.go).
	DeploymentName string `yaml:"deployment_name"`
	// BuildID names this build in the deployment; empty: the binary's
	// version (worker.BuildID).
	BuildID string `yaml:"build_id"`
	// Versioning turns Worker Versioning on; nil is on. Off, the workers
	// poll unversioned, as before Worker Deployments.
	Versioning *bool `yaml:"versioning"`
}

// Pulumi configures the engine the Automation API drives.
type Pulumi struct {
	BackendURL    string `yaml:"backend_url"`
	PassphraseEnv string `yaml:"passphrase_env"`
	// Home is PULUMI_HOME: plugins are installed and looked up there only.
	Home string `yaml:"home"`
	// Root is the toolchain scripts/toolchain builds: bin/pulumi (the CLI
	// when neither cli nor PATH gives one), bin/pulumi-language-yaml and
	// changeops' own provider, installed into Home at start-up.
	Root string `yaml:"root"`
	// Env are patterns (path.Match: AWS_*, ARM_*) of the worker's
	// variables that every stack's program, providers and command checks
	// get; nothing else of the worker's environment reaches them (see
	// config/env.go).
	Env []string `yaml:"env"`
	// The CLI, its plugins and the service backend's token: config/pulumi.go.
	PulumiCLI `yaml:",inline"`
}

// Stack is one deployable Pulumi stack in the repository.
type Stack struct {
	Name string `yaml:"name"`
	Path string `yaml:"path"`
	// Repo names an entry of repos; empty for the repo block.
	Repo string `yaml:"repo"`
	// Branch is the environment's branch; default the repository's branch.
	Branch string `yaml:"branch"`
	// AlsoWatch are globs (** allowed) of shared folders the stack uses: a
	// change there plans the stack too.
	AlsoWatch []string `yaml:"also_watch"`
	Stack     string   `yaml:"stack"`
	Approval  string   `yaml:"approval"`
	Approvers []string `yaml:"approvers"`
	// PullRequestApprovals is how many approvers' approvals on the pull
	// request make the decision under approval: pull-request (default 1).
	PullRequestApprovals int  `yaml:"pull_request_approvals" json:",omitempty"`
	FourEyes             bool `yaml:"four_eyes"`
	// Batch is how many queued changes one plan and one up may deploy
	// together (docs/batching.md); 0 or 1 deploys each on its own.
	Batch           int      `yaml:"batch" json:",omitempty"`
	ApprovalTimeout Duration `yaml:"approval_timeout"`
	Verify          []Check  `yaml:"verify"`
	VerifyTimeout   Duration `yaml:"verify_timeout"`
	// ApplyRetryFor is how long a preview or up that fails for a reason
	// other than the program (a cloud API's throttling or 5xx, a dropped
	// connection) is retried before the step fails.
	ApplyRetryFor Duration `yaml:"apply_retry_for"`
	// LockWait is how long a stack locked by someone else (a person's own
	// `pulumi up`, a CI job) is waited for.
	LockWait Duration `yaml:"lock_wait"`
	// DriftInterval is how often a scheduled drift check compares the
	// stack's live resources with its last good commit; nil means the
	// default (1h), 0 turns the schedule off.
	DriftInterval *Duration `yaml:"drift_interval"`
	// Drift is what a check that finds drift does: notify, approve (ask
	// the stack's approvers to re-apply git or accept) or heal (re-apply
	// git at once).
	Drift string `yaml:"drift"`
	// Env are more patterns of variables this stack's program, providers
	// and command checks get, besides pulumi.env.
	Env []string `yaml:"env"`
	// PreviewEnv are the patterns of variables previews of pull requests
	// get (none of Env or pulumi.env): give them read-only credentials.
	PreviewEnv []string `yaml:"preview_env" json:",omitempty"`
	// SecretsProvider encrypts the stack's secrets when changeops creates
	// the stack: default (the backend's), passphrase, service, or a KMS
	// URL (awskms://, azurekeyvault://, gcpkms://, hashivault://); an
	// existing stack keeps the one its Pulumi.<stack>.yaml names.
	SecretsProvider string `yaml:"secrets_provider" json:",omitempty"`
	// Labels describe the stack to policies (environment: prod); they
	// are input.stack.labels.
	Labels map[string]string `yaml:"labels" json:",omitempty"`
}

// RetryFor is apply_retry_for, defaulted: runs recorded before the field
// existed carry 0.
func (s Stack) RetryFor() time.Duration {
	if s.ApplyRetryFor <= 0 {
		return DefaultApplyRetryFor
	}
	return s.ApplyRetryFor.D()
}

// LockWaitFor is lock_wait, defaulted like RetryFor.
func (s Stack) LockWaitFor() time.Duration {
	if s.LockWait <= 0 {
		return DefaultLockWait
	}
	return s.LockWait.D()
}

// DriftEvery is the stack's drift schedule interval; 0 means none.
func (s Stack) DriftEvery() time.Duration {
	if s.DriftInterval == nil {
		return DefaultDriftInterval
	}
	return s.DriftInterval.D()
}

// Check is one verification step; exactly one of its fields is set.
type Check struct {
	HTTP      *HTTPCheck `yaml:"http,omitempty" json:"http,omitempty"`
	Command   []string   `yaml:"command,omitempty" json:"command,omitempty"`
	NoChanges bool       `yaml:"no_changes,omitempty" json:"no_changes,omitempty"`
}

// HTTPCheck probes a URL and expects a status code.
type HTTPCheck struct {
	URL    string `yaml:"url" json:"url"`
	Status int    `yaml:"status" json:"status"`
}

// Name describes the check for people.
func (c Check) Name() string {
	switch {
	case c.HTTP != nil:
		return fmt.Sprintf("http %s = %d", c.HTTP.URL, c.HTTP.Status)
	case len(c.Command) > 0:
		return "command " + strings.Join(c.Command, " ")
	case c.NoChanges:
		return "no_changes"
	}
	return "empty check"
}

// Slack configures the Slack app: notifications in a channel, and the
// Approve/Reject buttons. With no bot token only the console notifier runs.
type Slack struct {
	BotTokenEnv string `yaml:"bot_token_env"`
	// SigningSecretEnv verifies the requests Slack sends to
	// /slack/interactions (button clicks) and /slack/commands (the
	// /changeops command).
	SigningSecretEnv string `yaml:"signing_secret_env"`
	Channel          string `yaml:"channel"`
	// SocketMode receives button clicks and commands over a websocket
	// that changeops opens (for workspaces that cannot reach changeops
	// over HTTP) instead of /slack/interactions and /slack/commands; it
	// needs an app-level token.
	SocketMode  bool   `yaml:"socket_mode"`
	AppTokenEnv string `yaml:"app_token_env"`
	// GroupCacheTTL is how long user group members and users' emails are
	// cached; default 1m.
	GroupCacheTTL Duration `yaml:"group_cache_ttl"`
	// APIURL overrides Slack's API base (tests point it at slacktest).
	APIURL string `yaml:"api_url"`
}

// Log says how the worker logs: format text or json, level debug, info,
// warn or error (defaults text, info).
type Log struct {
	Format string `yaml:"format"`
	Level  string `yaml:"level"`
}

// HTTP is the worker's listener for health, webhooks and Slack.
type HTTP struct {
	Listen string `yaml:"listen"`
	// MetricsListen serves /metrics on an address of its own (like
	// 127.0.0.1:9090) instead of Listen, which then has no /metrics.
	MetricsListen string `yaml:"metrics_listen"`
	// MaxConcurrent bounds the request bodies read at once by the
	// endpoints that read one before they can authenticate it (webhooks,
	// Slack interactions); more get 503 with Retry-After.
	MaxConcurrent int `yaml:"max_concurrent"`
}

// Webhooks names the secrets of the webhook endpoints; an endpoint whose
// secret is not configured answers 404.
type Webhooks struct {
	GitHubSecretEnv  string `yaml:"github_secret_env"`
	GitLabTokenEnv   string `yaml:"gitlab_token_env"`
	GiteaSecretEnv   string `yaml:"gitea_secret_env"`
	GenericSecretEnv string `yaml:"generic_secret_env"`
	// MaxBody bounds a delivery's size; larger ones get 413.
	MaxBody int64 `yaml:"max_body"`
}

// Secrets are resolved from the environment; String never prints them.
type Secrets struct {
	GitUsername        string // of the repo block
	GitPassword        string
	RepoCreds          map[string]Creds // of repos entries, by name
	PulumiPassphrase   string
	PulumiAccessToken  string
	SlackBotToken      string
	SlackSigningSecret string
	SlackAppToken      string
	GitHubSecret       string
	GitLabToken        string
	GiteaSecret        string
	GenericSecret      string
	TemporalAPIKey     string
	// ForgeTokens are the repositories' forge tokens, by repos entry name
	// ("" the repo block).
	ForgeTokens map[string]string
}

// Creds are HTTP basic credentials of a repository.
type Creds struct{ Username, Password string }

func (Secrets) String() string   { return "[secrets redacted]" }
func (Secrets) GoString() string { return "[secrets redacted]" }

// Duration is a time.Duration written as "30s", "24h".
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: want a duration like 30s or 24h", n.Line)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration; write it like 30s, 5m or 24h", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// Defaults for every field that has one.
const (
	DefaultBranch          = "main"
	DefaultPollInterval    = 30 * time.Second
	DefaultTemporalAddress = "localhost:7233"
	DefaultNamespace       = "default"
	DefaultTaskQueue       = "changeops"
	DefaultUIURL           = "http://localhost:8233"
	DefaultPassphraseEnv   = "PULUMI_CONFIG_PASSPHRASE"
	DefaultApprovalTimeout = 24 * time.Hour
	DefaultVerifyTimeout   = 5 * time.Minute
	DefaultApplyRetryFor   = 10 * time.Minute
	DefaultLockWait        = 4 * time.Hour
	DefaultListen          = "127.0.0.1:8088"
	DefaultAuthorName      = "changeops"
	DefaultAuthorEmail     = "changeops@localhost"
	DefaultMaxBody         = 5 << 20
	DefaultMaxConcurrent   = 16
	DefaultGroupCacheTTL   = time.Minute
	DefaultStopTimeout     = time.Minute
	DefaultDriftInterval   = time.Hour
	// MinDriftInterval keeps a schedule from refreshing a stack back to
	// back: each check is a full refresh of every resource.
	MinDriftInterval = 10 * time.Second

	InitialBaseline = "baseline"
	InitialDeploy   = "deploy"
	RewriteHold     = "hold"
	RewriteContinue = "continue"

	// Drift policies.
	DriftNotify  = "notify"
	DriftApprove = "approve"
	DriftHeal    = "heal"
)

// Load reads path, applies defaults, resolves secrets through getenv and
// validates. Errors name the file, the field and the fix.
func Load(path string, getenv func(string) string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	cfg, err := Parse(data, filepath.Dir(abs), getenv)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Parse is Load for bytes already read; relative paths resolve against base.
func Parse(data []byte, base string, getenv func(string) string) (*Config, error) {
	var cfg Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true) // a typo in a field name must not silently become a default
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w (check the field names against docs/configuration.md)", err)
	}
	cfg.ApplyDefaults(base)
	if err := cfg.resolveSecrets(getenv); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

func absFrom(base, p string) string {
	if p == "" || filepath.IsAbs(p) || strings.Contains(p, "://") {
		return p
	}
	return filepath.Join(base, p)
}

// ApplyDefaults fills every unset field with its documented default;
// relative paths resolve against base. Parse calls it; programs that build
// a Config in Go call it before Validate.
func (c *Config) ApplyDefaults(base string) {
	c.Repo.applyDefaults(base)
	for i := range c.Repos {
		c.Repos[i].applyDefaults(base)
	}
	if c.Webhooks.MaxBody == 0 {
		c.Webhooks.MaxBody = DefaultMaxBody
	}
	setDefault(&c.Temporal.Address, DefaultTemporalAddress)
	setDefault(&c.Temporal.Namespace, DefaultNamespace)
	setDefault(&c.Temporal.TaskQueue, DefaultTaskQueue)
	setDefault(&c.Temporal.UIURL, DefaultUIURL)
	c.Temporal.applyDefaults(base)
	if c.Temporal.WorkerStopTimeout == 0 {
		c.Temporal.WorkerStopTimeout = Duration(DefaultStopTimeout)
	}
	setDefault(&c.DataDir, ".changeops/data")
	c.DataDir = absFrom(base, c.DataDir)
	setDefault(&c.Pulumi.BackendURL, "file://"+filepath.Join(c.DataDir, "pulumi-state"))
	setDefault(&c.Pulumi.PassphraseEnv, DefaultPassphraseEnv)
	setDefault(&c.Pulumi.Home, filepath.Join(c.DataDir, "pulumi-home"))
	c.Pulumi.Home = absFrom(base, c.Pulumi.Home)
	c.Pulumi.Root = absFrom(base, c.Pulumi.Root)
	c.Pulumi.PulumiCLI.applyDefaults(base)
	setDefault(&c.HTTP.Listen, DefaultListen)
	if c.HTTP.MaxConcurrent == 0 {
		c.HTTP.MaxConcurrent = DefaultMaxConcurrent
	}
	c.Policy.applyDefaults(base)
	setDefault(&c.Log.Format, "text")
	setDefault(&c.Log.Level, "info")
	if c.Slack.GroupCacheTTL == 0 {
		c.Slack.GroupCacheTTL = Duration(DefaultGroupCacheTTL)
	}
	for i := range c.Stacks {
		s := &c.Stacks[i]
		setDefault(&s.Approval, ApprovalManual)
		if s.Approval == ApprovalPullRequest && s.PullRequestApprovals == 0 {
			s.PullRequestApprovals = 1
		}
		setDefault(&s.Drift, DriftNotify)
		if r, ok := c.RepoByName(s.Repo); ok {
			setDefault(&s.Branch, r.Branch)
		}
		if s.ApprovalTimeout == 0 {
			s.ApprovalTimeout = Duration(DefaultApprovalTimeout)
		}
		if s.VerifyTimeout == 0 {
			s.VerifyTimeout = Duration(DefaultVerifyTimeout)
		}
		if s.ApplyRetryFor == 0 {
			s.ApplyRetryFor = Duration(DefaultApplyRetryFor)
		}
		if s.LockWait == 0 {
			s.LockWait = Duration(DefaultLockWait)
		}
		if !hasDotDot(s.Path) { // kept as written for Validate to refuse
			s.Path = filepath.ToSlash(filepath.Clean(s.Path))
		}
		for _, ch := range s.Verify {
			if ch.HTTP != nil && ch.HTTP.Status == 0 {
				ch.HTTP.Status = 200
			}
		}
	}
}

func (r *Repo) applyDefaults(base string) {
	setDefault(&r.Branch, DefaultBranch)
	if r.PollInterval == 0 {
		r.PollInterval = Duration(DefaultPollInterval)
	}
	setDefault(&r.AuthorName, DefaultAuthorName)
	setDefault(&r.AuthorEmail, DefaultAuthorEmail)
	setDefault(&r.Initial, InitialBaseline)
	setDefault(&r.OnRewrite, RewriteHold)
	// A repo URL that is a plain path is relative to the config file.
	if r.URL != "" && !strings.Contains(r.URL, "://") && !strings.Contains(r.URL, "@") {
		r.URL = absFrom(base, r.URL)
	}
	if r.Forge != nil {
		r.Forge.applyDefaults(r.URL)
	}
}

func setDefault(field *string, value string) {
	if *field == "" {
		*field = value
	}
}

// resolveSecrets reads every *_env field. A name that is set but whose
// variable is empty is an error naming both; an unset name means "not used".
func (c *Config) resolveSecrets(getenv func(string) string) error {
	var missing []string
	get := func(field, name string, required bool) string {
		if name == "" {
			return ""
		}
		v := getenv(name)
		if v == "" && required {
			missing = append(missing, fmt.Sprintf("%s names environment variable %s, which is not set: export it or remove the field", field, name))
		}
		return v
	}
	c.Secrets.GitUsername = get("repo.username_env", c.Repo.UsernameEnv, true)
	c.Secrets.GitPassword = get("repo.password_env", c.Repo.PasswordEnv, true)
	for i, r := range c.Repos {
		if r.UsernameEnv == "" && r.PasswordEnv == "" {
			continue
		}
		if c.Secrets.RepoCreds == nil {
			c.Secrets.RepoCreds = map[string]Creds{}
		}
		c.Secrets.RepoCreds[r.Name] = Creds{
			Username: get(fmt.Sprintf("repos[%d].username_env", i), r.UsernameEnv, true),
			Password: get(fmt.Sprintf("repos[%d].password_env", i), r.PasswordEnv, true),
		}
	}
	c.Secrets.PulumiPassphrase = get("pulumi.passphrase_env", c.Pulumi.PassphraseEnv, false)
	if c.Secrets.PulumiPassphrase == "" && c.PassphraseStacks() != nil {
		missing = append(missing, c.passphraseMissing())
	}
	c.Secrets.PulumiAccessToken = get("pulumi.access_token_env", c.Pulumi.AccessTokenEnv, true)
	c.Secrets.SlackBotToken = get("slack.bot_token_env", c.Slack.BotTokenEnv, false)
	c.Secrets.SlackSigningSecret = get("slack.signing_secret_env", c.Slack.SigningSecretEnv, false)
	c.Secrets.SlackAppToken = get("slack.app_token_env", c.Slack.AppTokenEnv, c.Slack.SocketMode)
	c.Secrets.GitHubSecret = get("webhooks.github_secret_env", c.Webhooks.GitHubSecretEnv, true)
	c.Secrets.GitLabToken = get("webhooks.gitlab_token_env", c.Webhooks.GitLabTokenEnv, true)
	c.Secrets.GiteaSecret = get("webhooks.gitea_secret_env", c.Webhooks.GiteaSecretEnv, true)
	c.Secrets.GenericSecret = get("webhooks.generic_secret_env", c.Webhooks.GenericSecretEnv, true)
	c.Secrets.TemporalAPIKey = get("temporal.api_key_env", c.Temporal.APIKeyEnv, true)
	for i, r := range c.AllRepos() {
		if r.Forge == nil {
			continue
		}
		at := "repo"
		if i > 0 {
			at = fmt.Sprintf("repos[%d]", i-1)
		}
		if c.Secrets.ForgeTokens == nil {
			c.Secrets.ForgeTokens = map[string]string{}
		}
		c.Secrets.ForgeTokens[r.Name] = get(forgeField(at), r.Forge.TokenEnv, true)
	}
	if len(missing) > 0 {
		return errors.New(strings.Join(missing, "; "))
	}
	return nil
}

// Validate checks the values a run depends on. Paths inside the repository
// (stack folders) are checked against a commit by the activities, since the
// repository is not on this machine when the config is read.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.Repo.URL == "" {
		bad("repo.url is empty: set it to the infrastructure repository (URL, path or file://)")
	}
	c.Repo.validate("repo", bad)
	c.validateLimits(bad)
	c.Temporal.validate(bad)
	repoNames := map[string]bool{}
	for i, r := range c.Repos {
		at := fmt.Sprintf("repos[%d]", i)
		checkName(at, "name each repository (used in stacks[].repo and IDs)", r.Name, repoNames, bad)
		if r.URL == "" {
			bad("%s.url is empty", at)
		}
		r.validate(at, bad)
	}
	c.validatePulumi(bad)
	c.validateEnv(bad)
	if c.Secrets.SlackBotToken != "" {
		if c.Slack.Channel == "" {
			bad("slack.channel is empty but a bot token is set: name the channel ID to post to")
		}
		if !c.Slack.SocketMode && c.Secrets.SlackSigningSecret == "" {
			bad("slack.signing_secret_env names no signing secret, but the Approve/Reject buttons need one to verify Slack's requests: set it to the variable holding the app's signing secret, or use slack.socket_mode with app_token_env")
		}
	}
	if c.Slack.SocketMode && c.Slack.AppTokenEnv == "" {
		bad("slack.socket_mode is on but slack.app_token_env is empty: name the variable holding the app-level token (xapp-..., scope connections:write)")
	}
	if !slices.Contains([]string{"text", "json"}, c.Log.Format) {
		bad("log.format %q is not a format: use text or json", c.Log.Format)
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		bad("log.level %q is not a level: use debug, info, warn or error", c.Log.Level)
	}
	c.validatePeople(bad)
	c.validatePolicy(bad)
	c.validateWindows(bad)
	if len(c.Stacks) == 0 {
		bad("stacks is empty: list at least one stack (name, path, stack)")
	}
	stackNames := map[string]bool{}
	for i, s := range c.Stacks {
		at := fmt.Sprintf("stacks[%d]", i)
		if s.Name != "" {
			at = fmt.Sprintf("stacks[%d] (%s)", i, s.Name)
		}
		checkName(at, "give each stack a unique name", s.Name, stackNames, bad)
		if s.Path == "" || s.Path == "." || strings.HasPrefix(s.Path, "../") || filepath.IsAbs(s.Path) {
			bad("%s.path %q must be a folder inside the repository, like stacks/web", at, s.Path)
		} else if hasDotDot(s.Path) {
			bad("%s.path %q has a .. segment: name the folder from the repository's root without .., like stacks/web", at, s.Path)
		}
		s.validateFields(at, bad)
		for j, g := range s.AlsoWatch {
			if !doublestar.ValidatePattern(g) {
				bad("%s.also_watch[%d] %q is not a valid glob: use forms like modules/** or shared/*.yaml", at, j, g)
			}
		}
		if _, ok := c.RepoByName(s.Repo); !ok {
			bad("%s.repo %q is not in repos: name one of them, or leave it empty for the repo block", at, s.Repo)
		}
		if s.Stack == "" {
			bad("%s.stack is empty: name the Pulumi stack, like prod", at)
		}
		switch s.Approval {
		case ApprovalManual, ApprovalAuto, ApprovalOnDestructive:
		case ApprovalPullRequest:
			if c.ForgeOf(s.Repo) == nil {
				bad("%s.approval is pull-request, but its repository has no forge: set forge (kind, url, token_env) on the repo block or its repos entry", at)
			}
			if s.PullRequestApprovals < 1 {
				bad("%s.pull_request_approvals %d: use 1 or more", at, s.PullRequestApprovals)
			}
		default:
			bad("%s.approval %q is not a policy: use manual, auto, on-destructive or pull-request", at, s.Approval)
		}
		// Any approval policy batches: a batch whose plan needs an
		// approval asks once for all its changes (docs/batching.md).
		if s.Batch < 0 || s.Batch > MaxBatch {
			bad("%s.batch %d: use 2 to %d to deploy queued changes together, or 0 to deploy each on its own", at, s.Batch, MaxBatch)
		}
		if s.Approval != ApprovalAuto && len(s.Approvers) == 0 {
			bad("%s.approvers is empty but approval is %s: list who may approve (people entries, Slack user or user group IDs)", at, s.Approval)
		}
		c.validateApprovers(at, s.Approvers, bad)
		switch s.Drift {
		case DriftNotify, DriftHeal:
		case DriftApprove:
			if len(s.Approvers) == 0 {
				bad("%s.approvers is empty but drift is approve: list who may re-apply git or accept drift", at)
			}
		default:
			bad("%s.drift %q is not a policy: use notify, approve or heal", at, s.Drift)
		}
		if s.ApplyRetryFor < 0 || s.LockWait < 0 {
			bad("%s.apply_retry_for %s and lock_wait %s must not be negative", at, s.ApplyRetryFor.D(), s.LockWait.D())
		}
		if d := s.DriftEvery(); d < 0 || (d > 0 && d < MinDriftInterval) {
			bad("%s.drift_interval %s: use 0 (no schedule) or %s or more", at, d, MinDriftInterval)
		}
		for j, ch := range s.Verify {
			n := 0
			if ch.HTTP != nil {
				n++
				if ch.HTTP.URL == "" {
					bad("%s.verify[%d].http.url is empty", at, j)
				}
			}
			if len(ch.Command) > 0 {
				n++
			}
			if ch.NoChanges {
				n++
			}
			if n != 1 {
				bad("%s.verify[%d] must set exactly one of http, command, no_changes", at, j)
			}
		}
	}
	return errors.Join(errs...)
}

// checkName refuses an empty, repeated or unsafe name (names go into
// workflow IDs, which use / as a separator, and into visibility queries).
func checkName(at, fix, name string, seen map[string]bool, bad func(string, ...any)) {
	switch {
	case name == "":
		bad("%s.name is empty: %s", at, fix)
	case seen[name]:
		bad("%s.name %q is used twice: names must be unique", at, name)
	case strings.ContainsAny(name, "/ \t'\"\\"):
		bad("%s.name %q contains a slash, space or quote: use letters, digits, - and _", at, name)
	}
	seen[name] = true
}

func (r *Repo) validate(at string, bad func(string, ...any)) {
	checkRepoURL(at, r.URL, bad)
	if r.PollInterval.D() < time.Second {
		bad("%s.poll_interval %s is below 1s: use 1s or more", at, r.PollInterval.D())
	}
	if r.Initial != InitialBaseline && r.Initial != InitialDeploy {
		bad("%s.initial %q: use baseline or deploy", at, r.Initial)
	}
	if r.OnRewrite != RewriteHold && r.OnRewrite != RewriteContinue {
		bad("%s.on_rewrite %q: use hold or continue", at, r.OnRewrite)
	}
	if (r.UsernameEnv == "") != (r.PasswordEnv == "") {
		bad("%s.username_env and %s.password_env go together: set both or neither", at, at)
	}
	if r.Forge != nil {
		r.Forge.validate(at, bad)
	}
}

// RepoByName finds a repository: "" is the repo block, else an entry of
// repos.
func (c *Config) RepoByName(name string) (Repo, bool) {
	if name == "" {
		return c.Repo, true
	}
	for _, r := range c.Repos {
		if r.Name == name {
			return r, true
		}
	}
	return Repo{}, false
}

// AllRepos is the repo block followed by repos.
func (c *Config) AllRepos() []Repo {
	return append([]Repo{c.Repo}, c.Repos...)
}

// GitCreds are the credentials of a repository, if any.
func (c *Config) GitCreds(name string) Creds {
	if name == "" {
		return Creds{Username: c.Secrets.GitUsername, Password: c.Secrets.GitPassword}
	}
	return c.Secrets.RepoCreds[name]
}

// BranchOf is the branch a stack deploys from.
func (c *Config) BranchOf(s Stack) string {
	if s.Branch != "" {
		return s.Branch
	}
	r, _ := c.RepoByName(s.Repo)
	return r.Branch
}

// Watch is one (repository, branch) a watcher follows.
type Watch struct {
	Repo   string // "" for the repo block
	Branch string
}

// Watches returns the (repository, branch) pairs the stacks deploy from,
// sorted: one watcher each.
func (c *Config) Watches() []Watch {
	var out []Watch
	for _, s := range c.Stacks {
		if w := (Watch{Repo: s.Repo, Branch: c.BranchOf(s)}); !slices.Contains(out, w) {
			out = append(out, w)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Repo != out[j].Repo {
			return out[i].Repo < out[j].Repo
		}
		return out[i].Branch < out[j].Branch
	})
	return out
}

// StacksTouched returns the stacks of a repository's branch that paths
// touch, sorted by name (the order locks are taken in): a path inside the
// stack's folder, or matching one of its also_watch globs.
func (c *Config) StacksTouched(repo, branch string, paths []string) []Stack {
	var out []Stack
	for _, s := range c.Stacks {
		if s.Repo != repo || c.BranchOf(s) != branch {
			continue
		}
		for _, p := range paths {
			if p == s.Path || strings.HasPrefix(p, s.Path+"/") || matchesAny(s.AlsoWatch, p) {
				out = append(out, s)
				break
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func matchesAny(globs []string, path string) bool {
	for _, g := range globs {
		if ok, _ := doublestar.Match(g, path); ok {
			return true
		}
	}
	return false
}

// StackNames returns the configured stack names, sorted.
func (c *Config) StackNames() []string {
	out := make([]string, 0, len(c.Stacks))
	for _, s := range c.Stacks {
		out = append(out, s.Name)
	}
	sort.Strings(out)
	return out
}

// StackByName finds a configured stack.
func (c *Config) StackByName(name string) (Stack, bool) {
	for _, s := range c.Stacks {
		if s.Name == name {
			return s, true
		}
	}
	return Stack{}, false
}
