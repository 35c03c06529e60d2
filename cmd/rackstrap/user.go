package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/rackstrap/rackstrap/controller/auth"
	"github.com/rackstrap/rackstrap/controller/store"
)

func newUserCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "user",
		Short: "Operators who authenticate with client certificates",
	}
	cert := &cobra.Command{
		Use:   "cert",
		Short: "Issue, list and revoke client certificates signed by the controller's CA",
		Long: `A client certificate authenticates an operator to an API served over TLS
(rackstrap serve --api-tls on): subject CN is the user, subject OU the role
(viewer, operator, auditor or admin). The controller's local CA signs them;
certificates from a CA given with 'serve --client-ca' are accepted too.
The CLI presents one with --client-cert/--client-key.`,
	}
	cert.AddCommand(newUserCertIssueCmd(g), newUserCertListCmd(g), newUserCertRevokeCmd(g))
	cmd.AddCommand(cert)
	return cmd
}

func newUserCertIssueCmd(g *globals) *cobra.Command {
	var (
		req    auth.CertRequest
		out    string
		local  localStore
		tlsDir string
	)
	cmd := &cobra.Command{
		Use:   "issue",
		Short: "Make a key here and have the controller's CA sign a certificate for it",
		Long: `Make a P-256 key on this machine (it never leaves it), send a certificate
request to the controller (an admin's call) or, with --data-dir, sign it with
the CA on this host, and write USER.crt, USER.key (mode 0600) and ca.crt
into --out.`,
		Example: `  rackstrap user cert issue --user alice --role operator --out ~/.rackstrap
  rackstrap --server https://ctl:8080 --ca-cert ~/.rackstrap/ca.crt \
      --client-cert ~/.rackstrap/alice.crt --client-key ~/.rackstrap/alice.key nodes list`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := contextOrBackground(cmd)
			if err := auth.CheckName(req.User); err != nil {
				return fmt.Errorf("--user: %w", err)
			}
			keyPEM, csrPEM, err := auth.NewClientKey(req.User)
			if err != nil {
				return err
			}
			req.CSR = string(csrPEM)
			var reply auth.CertReply
			if local.on() {
				if tlsDir == "" {
					if local.dataDir == "" {
						return errors.New("--tls-dir is needed with --database: the directory of the controller's ca.crt and ca.key")
					}
					tlsDir = filepath.Join(local.dataDir, "tls")
				}
				if _, err := os.Stat(filepath.Join(tlsDir, auth.CAKeyFile)); err != nil {
					return fmt.Errorf("no local CA in %s: %w; start 'rackstrap serve' with access control once, or pass --tls-dir", tlsDir, err)
				}
				ca, _, err := auth.LoadOrCreateCA(tlsDir)
				if err != nil {
					return err
				}
				db, err := local.open(ctx)
				if err != nil {
					return err
				}
				defer db.Close()
				if reply, err = auth.IssueCert(ctx, db, ca, req, localActor()); err != nil {
					return err
				}
			} else {
				c, err := g.authClient()
				if err != nil {
					return err
				}
				if reply, err = c.IssueCert(ctx, req); err != nil {
					return err
				}
			}
			if err := os.MkdirAll(out, 0o700); err != nil {
				return err
			}
			files := []struct {
				name string
				data []byte
				mode os.FileMode
			}{
				{req.User + ".key", keyPEM, 0o600},
				{req.User + ".crt", []byte(reply.Certificate), 0o644},
				{"ca.crt", []byte(reply.CA), 0o644},
			}
			for _, f := range files {
				p := filepath.Join(out, f.name)
				if err := os.WriteFile(p, f.data, f.mode); err != nil {
					return err
				}
				if err := os.Chmod(p, f.mode); err != nil {
					return err
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "issued certificate %s for %s (role %s), expires %s: %s, %s, %s\n", reply.Cert.Serial, req.User, reply.Cert.Role,
				reply.Cert.ExpiresAt.Format(time.RFC3339), filepath.Join(out, req.User+".crt"), filepath.Join(out, req.User+".key"), filepath.Join(out, "ca.crt"))
			return nil
		},
	}
	cmd.Flags().StringVar(&req.User, "user", "", "user `NAME` (the certificate's subject CN; required)")
	cmd.Flags().StringVar(&req.Role, "role", "", "`ROLE`: viewer, operator, auditor or admin (required)")
	cmd.Flags().StringVar(&req.TTL, "ttl", "", "lifetime (default 8760h, a year)")
	cmd.Flags().StringVar(&out, "out", ".", "`DIR` to write USER.crt, USER.key and ca.crt into")
	cmd.Flags().StringVar(&tlsDir, "tls-dir", "", "with --data-dir/--database: `DIR` of the controller's CA (default DATA-DIR/tls)")
	local.register(cmd, "signing with the CA on this host")
	cmd.MarkFlagRequired("user")
	cmd.MarkFlagRequired("role")
	return cmd
}

func newUserCertListCmd(g *globals) *cobra.Command {
	var local localStore
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List issued and revoked client certificates",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := contextOrBackground(cmd)
			var list []store.ClientCert
			if local.on() {
				db, err := local.open(ctx)
				if err != nil {
					return err
				}
				defer db.Close()
				if list, err = db.ListClientCerts(ctx); err != nil {
					return err
				}
			} else {
				c, err := g.authClient()
				if err != nil {
					return err
				}
				if list, err = c.Certs(ctx); err != nil {
					return err
				}
			}
			return render(cmd.OutOrStdout(), g.output, list, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "SERIAL\tUSER\tROLE\tSTATUS\tEXPIRES\tISSUED BY")
				for _, c := range list {
					status := "active"
					switch {
					case c.RevokedAt != nil:
						status = "revoked " + c.RevokedAt.Local().Format(time.DateTime)
					case time.Now().After(c.ExpiresAt):
						status = "expired"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.Serial, c.User, c.Role, status, c.ExpiresAt.Local().Format(time.DateTime), c.IssuedBy)
				}
			})
		},
	}
	local.register(cmd, "e.g. with the controller stopped")
	return cmd
}

func newUserCertRevokeCmd(g *globals) *cobra.Command {
	var local localStore
	cmd := &cobra.Command{
		Use:   "revoke SERIAL",
		Short: "Revoke a client certificate by serial (hex, as 'user cert list' shows it)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := contextOrBackground(cmd)
			var c store.ClientCert
			if local.on() {
				db, err := local.open(ctx)
				if err != nil {
					return err
				}
				defer db.Close()
				serial, err := auth.NormalizeSerial(args[0])
				if err != nil {
					return err
				}
				if c, err = db.RevokeClientCert(ctx, serial, localActor()); err != nil {
					return err
				}
			} else {
				cl, err := g.authClient()
				if err != nil {
					return err
				}
				if c, err = cl.RevokeCert(ctx, args[0]); err != nil {
					return err
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked certificate %s (user %s)\n", c.Serial, c.User)
			return nil
		},
	}
	local.register(cmd, "e.g. when no admin credential is left")
	return cmd
}
