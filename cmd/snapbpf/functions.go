package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/snapbpf/snapbpf/internal/catalog"
)

// functionInfo is one entry of functions --json.
type functionInfo struct {
	Name string `json:"name"`
	// Runtime is the language runtime of a function of a runtime image
	// (absent for the agent's Go functions), and Ref the name other
	// commands take for it (demo, bench): python:json.
	Runtime  string `json:"runtime,omitempty"`
	Ref      string `json:"ref"`
	GuestMiB int    `json:"guest_mib"`
}

func newFunctionsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "functions",
		Short: "List the functions: the Go functions built into the guest agent, then the Python images' (python; python-torch for rnn)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			list := []functionInfo{}
			for _, f := range append(catalog.Go(), catalog.Python()...) {
				list = append(list, functionInfo{Name: f.Name, Runtime: f.Runtime, Ref: f.Ref(), GuestMiB: f.GuestMiB(0)})
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), list)
			}
			for _, f := range list {
				fmt.Fprintf(cmd.OutOrStdout(), "%-15s guest RAM %d MiB by default\n", f.Ref, f.GuestMiB)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, `print a JSON array of {"name","runtime","ref","guest_mib"}`)
	return cmd
}
