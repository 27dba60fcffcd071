package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/snapbpf/snapbpf/internal/functions"
)

func newFunctionsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "functions",
		Short: "List the functions built into the guest agent",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, n := range functions.Names() {
				fmt.Fprintf(cmd.OutOrStdout(), "%-8s guest RAM %d MiB by default\n", n, functions.MinGuestMiB(n, functions.Options{}))
			}
			return nil
		},
	}
}
