// Package offline holds the commands that never talk to a cluster:
// "simulate" and "version". It must not import client-go, cli-runtime
// beyond genericiooptions, or anything else that does: the plugin's binary
// runs these commands without linking the cluster client, so that
// simulate pays no start-up for it (hack/verify-imports.sh checks).
package offline

// Annotation marks a command that never talks to a cluster: the full
// command tree hides kubectl's cluster flags from its help.
const Annotation = "trace-svc/offline"
