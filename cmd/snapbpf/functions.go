package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/snapbpf/snapbpf/internal/functions"
)

// functionInfo is one entry of functions --json.
type functionInfo struct {
	Name     string `json:"name"`
	GuestMiB int    `json:"guest_mib"`
}

func newFunctionsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "functions",
		Short: "List the functions built into the guest agent",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			list := []functionInfo{}
			for _, n := range functions.Names() {
				list = append(list, functionInfo{Name: n, GuestMiB: functions.MinGuestMiB(n, functions.Options{})})
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), list)
			}
			for _, f := range list {
				fmt.Fprintf(cmd.OutOrStdout(), "%-8s guest RAM %d MiB by default\n", f.Name, f.GuestMiB)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, `print a JSON array of {"name","guest_mib"}`)
	return cmd
}
