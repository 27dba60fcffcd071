package main

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// versionReport is what version prints: the module's build information,
// which the go command embeds in every binary it builds.
type versionReport struct {
	Module    string `json:"module"`
	Version   string `json:"version"`
	GoVersion string `json:"go_version"`
	Revision  string `json:"vcs_revision,omitempty"`
	Time      string `json:"vcs_time,omitempty"`
	Modified  bool   `json:"vcs_modified,omitempty"`
}

func buildVersion() (versionReport, error) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return versionReport{}, fmt.Errorf("version: the binary carries no build information (built without module support)")
	}
	v := versionReport{Module: bi.Main.Path, Version: bi.Main.Version, GoVersion: bi.GoVersion}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v, nil
}

func newVersionCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the module version and the commit this binary was built from",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, err := buildVersion()
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), v)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s (%s)", v.Module, v.Version, v.GoVersion)
			if v.Revision != "" {
				dirty := ""
				if v.Modified {
					dirty = ", modified"
				}
				fmt.Fprintf(cmd.OutOrStdout(), " commit %s of %s%s", v.Revision, v.Time, dirty)
			}
			fmt.Fprintln(cmd.OutOrStdout())
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the build information as JSON")
	return cmd
}
