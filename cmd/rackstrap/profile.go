package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/rackstrap/rackstrap/hwprofiles/profile"
	"github.com/rackstrap/rackstrap/hwprofiles/schema"
)

func newProfileCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "profile",
		Short: "List, show and lint hardware profiles (what a system must contain to be accepted)",
		Long: "Hardware profiles state what a partner system must contain (CPUs, memory, drives, NICs, GPUs,\n" +
			"firmware minimums) and which burn-in checks it runs. Rackstrap bundles profiles for the NVIDIA\n" +
			"DGX H100, Dell PowerEdge XE9680, Supermicro SYS-821GE-TNHR and a QEMU VM; site profiles extend them.",
	}
	cmd.AddCommand(newProfileListCmd(g), newProfileShowCmd(g), newProfileLintCmd(g), newProfileSchemaCmd())
	return cmd
}

// profileEntry is one line of `profile list`.
type profileEntry struct {
	Name        string        `json:"name"`
	Description string        `json:"description,omitempty"`
	Extends     string        `json:"extends,omitempty"`
	Match       profile.Match `json:"match,omitzero"`
	File        string        `json:"file"`
}

func newProfileListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the bundled hardware profiles",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cat, err := profile.Bundled()
			if err != nil {
				return err
			}
			var entries []profileEntry
			for _, name := range cat.Names() {
				p, err := cat.Raw(name)
				if err != nil {
					return err
				}
				r, err := cat.Get(name)
				if err != nil {
					return err
				}
				entries = append(entries, profileEntry{Name: p.Name, Description: r.Description, Extends: p.Extends, Match: r.Match, File: p.File})
			}
			return render(cmd.OutOrStdout(), g.output, entries, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "NAME\tEXTENDS\tMATCHES\tDESCRIPTION")
				for _, e := range entries {
					m := "(base profile)"
					if len(e.Match.Vendor)+len(e.Match.Model)+len(e.Match.SKU) > 0 {
						m = strings.TrimSpace(strings.Join(e.Match.Vendor, "|") + " " + strings.Join(e.Match.Model, "|"))
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", e.Name, dash(e.Extends), m, e.Description)
				}
			})
		},
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newProfileShowCmd(g *globals) *cobra.Command {
	var raw bool
	cmd := &cobra.Command{
		Use:   "show NAME|FILE",
		Short: "Show a profile with its inheritance applied (--raw: the file as shipped, comments and citations included)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cat, err := profile.Bundled()
			if err != nil {
				return err
			}
			if raw {
				src, err := profileSource(args[0])
				if err != nil {
					return err
				}
				_, err = cmd.OutOrStdout().Write(src)
				return err
			}
			p, err := lookupProfile(cat, args[0])
			if err != nil {
				return err
			}
			return render(cmd.OutOrStdout(), g.output, p, func(w *tabwriter.Writer) {
				enc := yaml.NewEncoder(w)
				enc.SetIndent(2)
				if err := enc.Encode(p); err != nil {
					fmt.Fprintf(w, "error: %v\n", err)
				}
				enc.Close()
			})
		},
	}
	cmd.Flags().BoolVar(&raw, "raw", false, "print the profile file as written, without applying extends")
	return cmd
}

// isProfileFile tells a profile file argument from a bundled profile name.
func isProfileFile(arg string) bool {
	return strings.ContainsRune(arg, os.PathSeparator) || strings.HasSuffix(arg, ".yaml") || strings.HasSuffix(arg, ".yml")
}

func profileSource(arg string) ([]byte, error) {
	if isProfileFile(arg) {
		return os.ReadFile(arg)
	}
	return profile.BundledSource(arg)
}

// lookupProfile resolves a bundled profile name, or a profile file whose
// extends chain ends in the bundled profiles.
func lookupProfile(cat *profile.Catalog, arg string) (*profile.Profile, error) {
	if !isProfileFile(arg) {
		p, err := cat.Get(arg)
		if errors.Is(err, profile.ErrNotFound) {
			return nil, fmt.Errorf("%w; run 'rackstrap profile list', or pass a profile file", err)
		}
		return p, err
	}
	p, err := profile.Load(arg)
	if err != nil {
		return nil, err
	}
	return cat.Resolve(p)
}

func newProfileLintCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "lint FILE...",
		Short: "Check profile files strictly; errors name file:line:column and key",
		Long: "Reads each profile file strictly (unknown keys, wrong kinds of values, bad sizes and versions\n" +
			"are errors) and resolves its extends chain against the bundled profiles and the other files\n" +
			"given. Prints every problem as FILE:LINE:COLUMN: KEY: MESSAGE and exits non-zero if there is any.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cat, err := profile.Bundled()
			if err != nil {
				return err
			}
			var parsed []*profile.Profile
			problems := 0
			for _, f := range args {
				p, err := profile.Load(f)
				if err != nil {
					problems += lintReport(cmd, err)
					continue
				}
				if err := cat.Add(p); err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "%s: %v\n", f, err)
					problems++
					continue
				}
				parsed = append(parsed, p)
			}
			for _, p := range parsed {
				if _, err := cat.Resolve(p); err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "%s: extends: %v\n", p.File, err)
					problems++
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%s)\n", p.File, p.Name)
			}
			if problems > 0 {
				return fmt.Errorf("profile lint: %d problem(s) in %d file(s); fix the lines above", problems, len(args))
			}
			return nil
		},
	}
}

// lintReport prints a Load error, one problem per line, and counts them.
func lintReport(cmd *cobra.Command, err error) int {
	var es profile.Errors
	if errors.As(err, &es) {
		for _, e := range es {
			fmt.Fprintln(cmd.ErrOrStderr(), e.Error())
		}
		return len(es)
	}
	fmt.Fprintln(cmd.ErrOrStderr(), err)
	return 1
}

func newProfileSchemaCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "schema",
		Short: "Print the JSON Schema of profile files (for editors)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := cmd.OutOrStdout().Write(schema.Profile)
			return err
		},
	}
}
