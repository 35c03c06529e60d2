package main

import (
	"fmt"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/rackstrap/rackstrap/controller/bundle"
	imgstore "github.com/rackstrap/rackstrap/images/store"
)

// defaultKeysDir is the keyring of a controller with the default data dir.
const defaultKeysDir = "/var/lib/rackstrap/keys"

func keysDirFlag(c *cobra.Command, dir *string) {
	c.Flags().StringVar(dir, "keys-dir", envOr("RACKSTRAP_KEYS_DIR", defaultKeysDir), "keyring `DIR`: signing key and trust store (env RACKSTRAP_KEYS_DIR)")
}

func newKeysCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "keys",
		Short: "Signing keys and the trust store: one ed25519 key signs images, bundles, reports and firmware packages",
		Long: `A keyring is a directory with this site's signing key (signing.key, mode
0600) and its trust store: trusted/<id>.pub for every signer whose bundles and
images this site accepts (each file works as 'serve --trusted-key'). Keys are
the files 'rackstrap image keygen' writes (PKCS #8 / PKIX PEM).

Rotation: 'keys rotate' makes a new signing key endorsed by the old one. A
site that trusts the old key accepts bundles signed by the new one (the
endorsement travels in the bundle) and learns the new key; the old key stays
trusted until 'keys revoke' retires it. See docs/decisions/0014-keys-and-bundles.md.`,
	}
	c.AddCommand(newKeysInitCmd(g), newKeysListCmd(g), newKeysRotateCmd(g), newKeysTrustCmd(g), newKeysRevokeCmd(g))
	return c
}

func newKeysInitCmd(g *globals) *cobra.Command {
	var dir, from string
	c := &cobra.Command{
		Use:   "init",
		Short: "Create this site's signing key (or adopt an existing one with --from) and trust it",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			k, err := bundle.OpenKeyring(dir)
			if err != nil {
				return err
			}
			info, err := k.Init(from)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "signing key %s in %s\npublic key for other sites and --trusted-key: %s\n", info.ID, k.SigningKeyFile(), info.File)
			return nil
		},
	}
	keysDirFlag(c, &dir)
	c.Flags().StringVar(&from, "from", "", "adopt this private key `FILE` (from 'rackstrap image keygen') instead of generating one")
	return c
}

func newKeysListCmd(g *globals) *cobra.Command {
	var dir string
	c := &cobra.Command{
		Use:   "list",
		Short: "List the signing key, trusted keys and revoked keys",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			k, err := bundle.OpenKeyring(dir)
			if err != nil {
				return err
			}
			infos, err := k.List()
			if err != nil {
				return err
			}
			return render(c.OutOrStdout(), g.output, infos, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "KEY\tSTATUS\tENDORSED BY\tFILE")
				for _, in := range infos {
					by := in.EndorsedBy
					if by == "" {
						by = "-"
					} else {
						by = by[:19]
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", in.ID, in.Status, by, in.File)
				}
			})
		},
	}
	keysDirFlag(c, &dir)
	return c
}

func newKeysRotateCmd(g *globals) *cobra.Command {
	var dir string
	c := &cobra.Command{
		Use:   "rotate",
		Short: "Replace the signing key with a new one endorsed by the old (the old stays trusted until revoked)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			k, err := bundle.OpenKeyring(dir)
			if err != nil {
				return err
			}
			old, nw, err := k.Rotate(time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "new signing key %s, endorsed by %s\nthe old key stays trusted; retire it with 'rackstrap keys revoke %s' once every site has imported a bundle signed by the new key\n", nw.ID, old.ID, old.ID[7:23])
			return nil
		},
	}
	keysDirFlag(c, &dir)
	return c
}

func newKeysTrustCmd(g *globals) *cobra.Command {
	var dir string
	c := &cobra.Command{
		Use:   "trust PUBLIC-KEY-FILE...",
		Short: "Add signers' public keys to the trust store",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			k, err := bundle.OpenKeyring(dir)
			if err != nil {
				return err
			}
			for _, f := range args {
				pub, err := imgstore.LoadPublicKey(f)
				if err != nil {
					return fmt.Errorf("keys trust %s: %w", f, err)
				}
				info, err := k.Trust(pub)
				if err != nil {
					return err
				}
				fmt.Fprintf(c.OutOrStdout(), "trusted %s (%s)\n", info.ID, filepath.Base(f))
			}
			return nil
		},
	}
	keysDirFlag(c, &dir)
	return c
}

func newKeysRevokeCmd(g *globals) *cobra.Command {
	var dir string
	c := &cobra.Command{
		Use:   "revoke KEY-ID",
		Short: "Retire a trusted key: nothing it signed or endorsed is accepted again",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			k, err := bundle.OpenKeyring(dir)
			if err != nil {
				return err
			}
			info, err := k.Revoke(args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "revoked %s\n", info.ID)
			return nil
		},
	}
	keysDirFlag(c, &dir)
	return c
}
