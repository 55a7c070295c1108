package offline

import (
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// Set by goreleaser through -ldflags "-X ..." (see .goreleaser.yaml), for
// example -X github.com/trace-svc/kubectl-trace-svc/cmd/offline.version=1.2.3.
// A plain "go build" or "go install" leaves them alone; currentVersion then
// falls back to what the Go toolchain recorded in the binary.
var (
	version = "dev"
	commit  = "none"
	date    = "unknown"
)

// VersionInfo is what "kubectl trace-svc version -o json" prints.
type VersionInfo struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	Date      string `json:"date"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
}

// currentVersion describes this binary: the ldflags values when goreleaser
// set them, otherwise the module version ("go install ...@v1.2.3") and the
// VCS stamp of the build, where the toolchain recorded them.
func currentVersion() VersionInfo {
	info := VersionInfo{Version: version, Commit: commit, Date: date, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return info
	}
	if info.Version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		info.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch {
		case s.Key == "vcs.revision" && info.Commit == "none":
			info.Commit = s.Value
		case s.Key == "vcs.time" && info.Date == "unknown":
			info.Date = s.Value
		}
	}
	return info
}

// NewVersionCommand builds "kubectl trace-svc version".
func NewVersionCommand(streams genericiooptions.IOStreams) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Annotations: map[string]string{Annotation: "true"},
		Use:         "version [-o json]",
		Short:       "Print the plugin's version",
		Long: `
			Print the plugin's version, the commit and date it was built from, the Go version
			and the platform. -o json prints the same as an object with the keys version,
			commit, date, goVersion and platform.`,
		Args:                  cobra.NoArgs,
		DisableFlagsInUseLine: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "" && output != "json" {
				return fmt.Errorf("--output %q is not supported: use json or leave it empty", output)
			}
			cmd.SilenceUsage = true
			info := currentVersion()
			if output == "json" {
				enc := json.NewEncoder(streams.Out)
				enc.SetIndent("", "  ")
				return enc.Encode(info)
			}
			_, err := fmt.Fprintf(streams.Out, "kubectl trace-svc %s (commit %s, built %s, %s, %s)\n", info.Version, info.Commit, info.Date, info.GoVersion, info.Platform)
			return err
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json (default: one line of text)")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"json"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}
