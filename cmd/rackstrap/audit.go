package main

import (
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/rackstrap/rackstrap/controller/api"
	"github.com/rackstrap/rackstrap/controller/store"
)

func newAuditCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Read and verify the hash-chained audit log",
	}
	cmd.AddCommand(newAuditVerifyCmd(g))
	return cmd
}

func newAuditVerifyCmd(g *globals) *cobra.Command {
	var dataDir, database string
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check that no audit entry was changed, removed or reordered",
		Long: `Walk the audit chain from its first entry: each entry's hash covers its
content and the hash of the entry before it. Exits 0 on an intact chain and
prints its head hash (record it elsewhere to detect a truncated log later);
exits 1 naming the first bad entry otherwise.

With --data-dir or --database the store is read directly (the controller may
be stopped); without them the controller at --server verifies its own store.`,
		Example: `  rackstrap audit verify --data-dir /var/lib/rackstrap
  rackstrap audit verify --database postgres://rackstrap@db/rackstrap
  rackstrap audit verify --server http://controller:8080`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := contextOrBackground(cmd)
			var reply api.VerifyReply
			if dataDir != "" || database != "" {
				db, err := store.Open(ctx, database, dataDir, store.Options{})
				if err != nil {
					return err
				}
				defer db.Close()
				res, err := db.VerifyAudit(ctx)
				var ce *store.ChainError
				switch {
				case errors.As(err, &ce):
					reply = api.VerifyReply{Entries: res.Entries, BadSeq: ce.Seq, Reason: ce.Reason}
				case err != nil:
					return err
				default:
					reply = api.VerifyReply{Intact: true, Entries: res.Entries, Head: res.Head}
				}
			} else {
				c, err := g.client()
				if err != nil {
					return err
				}
				if reply, err = c.VerifyAudit(ctx); err != nil {
					return err
				}
			}
			if err := render(cmd.OutOrStdout(), g.output, reply, func(w *tabwriter.Writer) {
				if reply.Intact {
					fmt.Fprintf(w, "audit chain intact: %d entries, head %s\n", reply.Entries, reply.Head)
				}
			}); err != nil {
				return err
			}
			if !reply.Intact {
				return fmt.Errorf("audit chain broken at entry %d: %s (%d entries before it are intact); restore the store from a backup and investigate who had write access", reply.BadSeq, reply.Reason, reply.Entries)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "verify the SQLite store in `DIR` directly")
	cmd.Flags().StringVar(&database, "database", "", "verify the PostgreSQL store at `URL` directly")
	return cmd
}
