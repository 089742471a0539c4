// Package workflows holds changeops' deterministic workflow code: the change
// run (one per merged commit) and the branch watcher. Everything that touches
// the world is an activity in package activities.
package workflows
