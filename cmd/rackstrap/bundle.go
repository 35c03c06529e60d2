package main

import (
	"crypto"
	"crypto/ed25519"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/rackstrap/rackstrap/controller/bundle"
	imgstore "github.com/rackstrap/rackstrap/images/store"
)

// defaultArtifactsDir is where bundles are imported by default.
const defaultArtifactsDir = "/var/lib/rackstrap/artifacts"

func newBundleCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "bundle",
		Short: "Signed offline bundles: everything a disconnected site serves, on removable media",
		Long: `'bundle export' packs OS images (from an image store), iPXE binaries,
kernels and initramfs, firmware packages, hardware profiles and firmware
baselines into one tar (--zstd: compressed) whose manifest lists every file's
sha256 and is signed with the keyring's key.

'bundle import' checks the signature against the trust store ('rackstrap keys
trust') and every file's size and sha256 before anything enters the artifact
store; a tampered, unsigned or untrusted bundle is refused and nothing is
imported. Importing a bundle again adds nothing; an interrupted import
resumes. The artifact store then holds
  boot/       serve --artifacts
  images/     serve --image-store
  firmware/, profiles/, baselines/
  bundles/    one record per imported bundle`,
	}
	c.AddCommand(newBundleExportCmd(g), newBundleImportCmd(g), newBundleVerifyCmd(g), newBundleListCmd(g))
	return c
}

func newBundleExportCmd(g *globals) *cobra.Command {
	var (
		out, keysDir, name, imageStore                        string
		compress                                              bool
		images, ipxe, kernels, initrds, boot, fw, prof, bases []string
	)
	c := &cobra.Command{
		Use:   "export --out FILE [--image-store DIR --image NAME:VERSION]... [--ipxe F]... [--kernel F]... [--initrd F]... [--firmware F]... [--profile F]... [--baseline F]...",
		Short: "Pack artifacts into a signed bundle",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("bundle export: give --out FILE")
			}
			k, err := bundle.OpenKeyring(keysDir)
			if err != nil {
				return err
			}
			priv, rots, err := k.Signer()
			if err != nil {
				return err
			}
			var files []bundle.Source
			for _, set := range []struct {
				kind  bundle.Kind
				files []string
			}{{bundle.KindIPXE, ipxe}, {bundle.KindKernel, kernels}, {bundle.KindInitramfs, initrds}, {bundle.KindFile, boot},
				{bundle.KindFirmware, fw}, {bundle.KindProfile, prof}, {bundle.KindBaseline, bases}} {
				for _, f := range set.files {
					files = append(files, bundle.Source{Kind: set.kind, File: f})
				}
			}
			if len(images) > 0 && imageStore == "" {
				return errors.New("bundle export: --image needs --image-store DIR")
			}
			if imageStore != "" && len(images) == 0 {
				// The whole store: every signed image.
				st, err := imgstore.Open(imageStore)
				if err != nil {
					return err
				}
				refs, err := st.List()
				if err != nil {
					return err
				}
				for _, r := range refs {
					if r.Signed {
						images = append(images, r.String())
					} else {
						fmt.Fprintf(c.ErrOrStderr(), "skipping %s: not signed ('rackstrap image sign')\n", r)
					}
				}
			}
			if name == "" {
				name = "bundle-" + time.Now().UTC().Format("20060102T150405Z")
			}
			m, err := bundle.ExportFile(contextOrBackground(c), out, bundle.ExportOptions{Name: name, Files: files,
				ImageStore: imageStore, Images: images, Signer: priv, Rotations: rots, Compress: compress})
			if err != nil {
				return err
			}
			var total int64
			for _, e := range m.Entries {
				total += e.Size
			}
			fmt.Fprintf(c.OutOrStdout(), "bundle %s: %d files, %d bytes, signed by %s, written to %s\n", m.Name, len(m.Entries), total, keyIDOf(priv), out)
			return nil
		},
	}
	fl := c.Flags()
	fl.StringVar(&out, "out", "", "bundle `FILE` to write")
	keysDirFlag(c, &keysDir)
	fl.StringVar(&name, "name", "", "bundle `NAME` (default: bundle-<UTC time>)")
	fl.BoolVar(&compress, "zstd", false, "compress the bundle with zstd")
	fl.StringVar(&imageStore, "image-store", "", "image store `DIR` the --image references are read from")
	fl.StringSliceVar(&images, "image", nil, "signed image `NAME:VERSION` to pack (repeatable; default with --image-store: every signed image)")
	fl.StringSliceVar(&ipxe, "ipxe", nil, "iPXE binary `FILE` (repeatable)")
	fl.StringSliceVar(&kernels, "kernel", nil, "netboot kernel `FILE` (repeatable)")
	fl.StringSliceVar(&initrds, "initrd", nil, "netboot initramfs `FILE` (repeatable)")
	fl.StringSliceVar(&boot, "boot-file", nil, "other `FILE` for the boot server (repeatable)")
	fl.StringSliceVar(&fw, "firmware", nil, "firmware package `FILE` or its .sig (repeatable)")
	fl.StringSliceVar(&prof, "profile", nil, "hardware profile `FILE` (repeatable)")
	fl.StringSliceVar(&bases, "baseline", nil, "firmware baseline `FILE` (repeatable)")
	return c
}

func newBundleImportCmd(g *globals) *cobra.Command {
	var keysDir, dir string
	c := &cobra.Command{
		Use:   "import FILE",
		Short: "Verify a bundle against the trust store and import it into the artifact store",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			k, err := bundle.OpenKeyring(keysDir)
			if err != nil {
				return err
			}
			res, err := bundle.ImportFile(contextOrBackground(c), args[0], bundle.ImportOptions{Dir: dir, Keys: k})
			if err != nil {
				return err
			}
			return render(c.OutOrStdout(), g.output, res, func(tw *tabwriter.Writer) {
				if res.AlreadyImported {
					fmt.Fprintf(tw, "bundle %s (%s) was already imported into %s: nothing added\n", res.Name, res.Digest[:19], dir)
					return
				}
				fmt.Fprintf(tw, "bundle %s (%s) signed by %s: %d files, %d added, %d already present, %d resumed, into %s\n",
					res.Name, res.Digest[:19], res.Signer[:19], res.Entries, res.Added, res.Present, res.Resumed, dir)
				for _, l := range res.Learned {
					fmt.Fprintf(tw, "now trusting %s (endorsed by a trusted key's rotation)\n", l)
				}
			})
		},
	}
	keysDirFlag(c, &keysDir)
	c.Flags().StringVar(&dir, "artifacts", envOr("RACKSTRAP_ARTIFACTS", defaultArtifactsDir), "artifact store `DIR` to import into (env RACKSTRAP_ARTIFACTS)")
	return c
}

func newBundleVerifyCmd(g *globals) *cobra.Command {
	var keysDir string
	c := &cobra.Command{
		Use:   "verify FILE",
		Short: "Check a bundle against the trust store and every file's sha256, writing nothing",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			k, err := bundle.OpenKeyring(keysDir)
			if err != nil {
				return err
			}
			res, err := bundle.ImportFile(contextOrBackground(c), args[0], bundle.ImportOptions{Keys: k, VerifyOnly: true})
			if err != nil {
				return err
			}
			return render(c.OutOrStdout(), g.output, res, func(tw *tabwriter.Writer) {
				fmt.Fprintf(tw, "bundle %s (%s) signed by %s: %d files verified\n", res.Name, res.Digest[:19], res.Signer[:19], res.Entries)
			})
		},
	}
	keysDirFlag(c, &keysDir)
	return c
}

func newBundleListCmd(g *globals) *cobra.Command {
	var dir string
	c := &cobra.Command{
		Use:   "list",
		Short: "List the bundles imported into an artifact store",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			recs, err := bundle.Imported(dir)
			if err != nil {
				return err
			}
			return render(c.OutOrStdout(), g.output, recs, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "BUNDLE\tDIGEST\tSIGNER\tFILES\tIMPORTED")
				for _, r := range recs {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", r.Name, r.Digest[:19], r.Signer[:19], r.Entries, r.Imported)
				}
			})
		},
	}
	c.Flags().StringVar(&dir, "artifacts", envOr("RACKSTRAP_ARTIFACTS", defaultArtifactsDir), "artifact store `DIR` (env RACKSTRAP_ARTIFACTS)")
	return c
}

func keyIDOf(priv interface{ Public() crypto.PublicKey }) string {
	if pub, ok := priv.Public().(ed25519.PublicKey); ok {
		return imgstore.KeyID(pub)
	}
	return "?"
}
