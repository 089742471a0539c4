package activities

import "github.com/changeops/changeops/internal/pulumienv"

// pulumiEnvForTests is an environment for activities that never reach the
// engine (git-only tests).
func pulumiEnvForTests() pulumienv.Env { return pulumienv.Env{} }
