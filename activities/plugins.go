package activities

import (
	"fmt"
	"regexp"
	"strings"
)

// A missing plugin, as the engine words it: not installed while plugin
// acquisition is off ("no resource plugin 'pulumi-resource-aws' found in
// the workspace at version v6.1.0 from URL"), or a download that failed
// ("Could not automatically download and install resource plugin
// 'pulumi-resource-aws' at version v6.1.0, install the plugin using
// `pulumi plugin install resource aws v6.1.0 --server URL`: ...").
var (
	missingPlugin = regexp.MustCompile(`(?i)(?:no|install) (resource|language|analyzer|converter|tool) plugin 'pulumi-[a-z]+-([^']+)'(?: found in the workspace)?(?: at version v([0-9][^\s,]*))?`)
	pluginServer  = regexp.MustCompile(`(?: from |--server )([a-z]+://[^\s` + "`" + `]+)`)
)

// pluginHint tells a person how to provide the plugin an engine error
// says is missing: its kind, name, version and server, and the settings
// that would install it. Empty when msg names no missing plugin.
func pluginHint(msg string) string {
	m := missingPlugin.FindStringSubmatch(msg)
	if m == nil {
		return ""
	}
	kind, name, version := strings.ToLower(m[1]), m[2], m[3]
	entry := "name: " + name
	if kind != "resource" {
		entry += ", kind: " + kind
	}
	what := kind + " plugin " + name
	if version != "" {
		what += " v" + version
		entry += ", version: " + version
	}
	// The server comes from the program, which whoever merges controls:
	// it is named as what the program asks for, never put into the
	// setting the hint suggests, since pulumi.plugins installs into the
	// PULUMI_HOME every stack shares.
	server := ""
	if s := pluginServer.FindStringSubmatch(msg); s != nil {
		server = s[1]
		what += " from " + server + " (as the program asks; check it is a server you trust)"
		entry += ", server: <a server you trust>"
	}
	lower := strings.ToLower(msg)
	if strings.Contains(lower, "could not automatically download") || strings.Contains(lower, "failed to download plugin") {
		where := "its server"
		if server != "" {
			where = server
		}
		return fmt.Sprintf(" (the stack needs %s, and downloading it failed: let the worker reach %s, send the download to a server of yours with pulumi.plugin_mirrors, or install it at start-up with pulumi.plugins: {%s})",
			what, where, entry)
	}
	return fmt.Sprintf(" (the stack needs %s, which is not installed, and plugin acquisition is off (pulumi.offline): install it at start-up with pulumi.plugins: {%s}, or set pulumi.offline: false to let the engine download it)",
		what, entry)
}
