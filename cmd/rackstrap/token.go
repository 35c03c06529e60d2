package main

import (
	"context"
	"errors"
	"fmt"
	"os/user"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/rackstrap/rackstrap/controller/auth"
	"github.com/rackstrap/rackstrap/controller/store"
)

// localStore is the --data-dir/--database pair of verbs that may work on
// the store directly instead of through the API.
type localStore struct{ dataDir, database string }

func (l *localStore) register(cmd *cobra.Command, what string) {
	cmd.Flags().StringVar(&l.dataDir, "data-dir", "", "work on the store under `DIR` directly, not through the API ("+what+")")
	cmd.Flags().StringVar(&l.database, "database", "", "work on the PostgreSQL store at `URL` directly, not through the API")
}

func (l *localStore) on() bool { return l.dataDir != "" || l.database != "" }

func (l *localStore) open(ctx context.Context) (*store.DB, error) {
	return store.Open(ctx, l.database, l.dataDir, store.Options{})
}

// localActor names who acted on the store directly, for the audit log.
func localActor() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return "local:" + u.Username
	}
	return "local:" + envOr("USER", "unknown")
}

func newTokenCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create, list and revoke API tokens",
		Long: `API tokens authenticate operators and automation to the controller's API
("Authorization: Bearer TOKEN"; the CLI sends --token or RACKSTRAP_TOKEN).
A token has a name, a role (viewer, operator, auditor, admin), an expiry and
a last-used time; the controller keeps only its sha256, so the secret is
shown once, at creation. Managing tokens through the API needs an admin.

The first admin token is made on the controller's host, against its store:
  rackstrap token create --bootstrap --role admin --name admin --data-dir /var/lib/rackstrap`,
	}
	cmd.AddCommand(newTokenCreateCmd(g), newTokenListCmd(g), newTokenRevokeCmd(g))
	return cmd
}

func newTokenCreateCmd(g *globals) *cobra.Command {
	var (
		req       auth.TokenRequest
		local     localStore
		bootstrap bool
	)
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create an API token and print its secret (shown only this once)",
		Example: `  rackstrap token create --bootstrap --role admin --name admin --data-dir /var/lib/rackstrap
  rackstrap token create --name ci --role operator --ttl 720h
  RACKSTRAP_TOKEN=$(rackstrap token create --name nightly --role viewer -o json | jq -r .secret)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := contextOrBackground(cmd)
			if bootstrap && !local.on() {
				local.dataDir = "/var/lib/rackstrap"
			}
			var out auth.NewTokenReply
			if local.on() {
				db, err := local.open(ctx)
				if err != nil {
					return err
				}
				defer db.Close()
				out, err = auth.CreateToken(ctx, db, req, time.Now(), localActor())
				if err != nil {
					return err
				}
			} else {
				c, err := g.authClient()
				if err != nil {
					return err
				}
				if out, err = c.CreateToken(ctx, req); err != nil {
					return err
				}
			}
			return render(cmd.OutOrStdout(), g.output, out, func(tw *tabwriter.Writer) {
				fmt.Fprintf(tw, "%s\n", out.Secret)
				fmt.Fprintf(cmd.ErrOrStderr(), "token %s (role %s) expires %s; the line above is its secret, shown only now: keep it in a secret store and pass it with --token or RACKSTRAP_TOKEN\n",
					out.Token.Name, out.Token.Role, out.Token.ExpiresAt.Format(time.RFC3339))
			})
		},
	}
	cmd.Flags().StringVar(&req.Name, "name", "", "token `NAME` (required): lowercase letters, digits, '.', '_', '-'")
	cmd.Flags().StringVar(&req.Role, "role", "", "`ROLE`: viewer, operator, auditor or admin (required)")
	cmd.Flags().StringVar(&req.TTL, "ttl", "", "lifetime (default 2160h, 90 days; at most 5 years)")
	cmd.Flags().BoolVar(&bootstrap, "bootstrap", false, "create the token in the store directly (--data-dir, default /var/lib/rackstrap, or --database): the way to make the first admin token")
	local.register(cmd, "with --bootstrap")
	cmd.MarkFlagRequired("name")
	cmd.MarkFlagRequired("role")
	return cmd
}

func tokenTable(list []store.APIToken) func(*tabwriter.Writer) {
	return func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "NAME\tROLE\tSTATUS\tEXPIRES\tLAST USED\tCREATED BY")
		now := time.Now()
		for _, t := range list {
			status := "active"
			switch {
			case t.RevokedAt != nil:
				status = "revoked " + t.RevokedAt.Local().Format(time.DateTime)
			case !now.Before(t.ExpiresAt):
				status = "expired"
			}
			used := "never"
			if t.LastUsedAt != nil {
				used = t.LastUsedAt.Local().Format(time.DateTime)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.Name, t.Role, status, t.ExpiresAt.Local().Format(time.DateTime), used, t.CreatedBy)
		}
	}
}

func newTokenListCmd(g *globals) *cobra.Command {
	var local localStore
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List API tokens: name, role, status, expiry, last use (never secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := contextOrBackground(cmd)
			var list []store.APIToken
			if local.on() {
				db, err := local.open(ctx)
				if err != nil {
					return err
				}
				defer db.Close()
				if list, err = db.ListAPITokens(ctx); err != nil {
					return err
				}
			} else {
				c, err := g.authClient()
				if err != nil {
					return err
				}
				if list, err = c.Tokens(ctx); err != nil {
					return err
				}
			}
			return render(cmd.OutOrStdout(), g.output, list, tokenTable(list))
		},
	}
	local.register(cmd, "e.g. with the controller stopped")
	return cmd
}

func newTokenRevokeCmd(g *globals) *cobra.Command {
	var local localStore
	cmd := &cobra.Command{
		Use:   "revoke NAME",
		Short: "Revoke an API token: it stops working at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := contextOrBackground(cmd)
			var t store.APIToken
			if local.on() {
				db, err := local.open(ctx)
				if err != nil {
					return err
				}
				defer db.Close()
				t, err = db.RevokeAPIToken(ctx, args[0], localActor())
				if errors.Is(err, store.ErrNotFound) {
					return fmt.Errorf("no unrevoked API token named %q; list them with 'rackstrap token list'", args[0])
				}
				if err != nil {
					return err
				}
			} else {
				c, err := g.authClient()
				if err != nil {
					return err
				}
				if t, err = c.RevokeToken(ctx, args[0]); err != nil {
					return err
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked token %s (role %s)\n", t.Name, t.Role)
			return nil
		},
	}
	local.register(cmd, "e.g. when no admin token is left")
	return cmd
}

// authClient is a token and certificate client for --server with the
// global credentials.
func (g *globals) authClient() (*auth.Client, error) { return auth.NewClient(g.server, g.creds) }
