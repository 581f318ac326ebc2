package app

import "github.com/spf13/cobra"

func newServeCommand() *cobra.Command { return &cobra.Command{Use: "serve"} }
