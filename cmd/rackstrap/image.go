package main

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/rackstrap/rackstrap/images/build"
	"github.com/rackstrap/rackstrap/images/spec"
	"github.com/rackstrap/rackstrap/images/store"
	"github.com/rackstrap/rackstrap/images/stream"
)

// newImageCmd is the `image` noun: lint and build OS images from a spec,
// keep them in a signed content-addressed store, verify and write them.
func newImageCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "image",
		Short: "Build, sign, store, verify and write OS images",
	}
	c.AddCommand(newImageLintCmd(g), newImageBuildCmd(g), newImageKeygenCmd(g), newImageSignCmd(g),
		newImageImportCmd(g), newImageListCmd(g), newImageShowCmd(g), newImageVerifyCmd(g), newImageWriteCmd(g))
	return c
}

func storeFlag(c *cobra.Command, p *string) {
	c.Flags().StringVar(p, "store", envOr("RACKSTRAP_IMAGE_STORE", "/var/lib/rackstrap/images"), "image store `DIR` (env RACKSTRAP_IMAGE_STORE)")
}

func newImageLintCmd(g *globals) *cobra.Command {
	var example, schema bool
	c := &cobra.Command{
		Use:   "lint SPEC",
		Short: "Check an image spec: keys, types, values, paths; print errors with file:line:col",
		Args: func(c *cobra.Command, args []string) error {
			if example || schema {
				return cobra.NoArgs(c, args)
			}
			return cobra.ExactArgs(1)(c, args)
		},
		RunE: func(c *cobra.Command, args []string) error {
			switch {
			case example:
				_, err := c.OutOrStdout().Write(spec.Example)
				return err
			case schema:
				_, err := c.OutOrStdout().Write(spec.Schema)
				return err
			}
			data, err := os.ReadFile(args[0])
			if err != nil {
				return fmt.Errorf("image lint: %w", err)
			}
			dir, _ := filepath.Abs(filepath.Dir(args[0]))
			findings := spec.Lint(data, args[0], dir)
			for _, f := range findings {
				fmt.Fprintln(c.OutOrStdout(), f.Error())
			}
			if findings.HasErrors() {
				n := 0
				for _, f := range findings {
					if !f.Warning {
						n++
					}
				}
				return fmt.Errorf("image lint: %s has %d error(s)", args[0], n)
			}
			fmt.Fprintf(c.OutOrStdout(), "%s: ok\n", args[0])
			return nil
		},
	}
	c.Flags().BoolVar(&example, "example", false, "print a complete example spec")
	c.Flags().BoolVar(&schema, "schema", false, "print the spec's JSON Schema")
	return c
}

func newImageBuildCmd(g *globals) *cobra.Command {
	var out, storeDir, keyPath string
	var epoch int64 = -1
	c := &cobra.Command{
		Use:   "build SPEC --out DIR",
		Short: "Build every output of a spec (raw disk, qcow2, squashfs, netboot, ISO) reproducibly",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			s, err := spec.Load(args[0])
			if err != nil {
				return err
			}
			if out == "" {
				return errors.New("image build: no --out DIR given; name the directory for the outputs")
			}
			var priv ed25519.PrivateKey
			if keyPath != "" {
				if priv, err = store.LoadPrivateKey(keyPath); err != nil {
					return err
				}
			}
			opts := build.Options{OutDir: out, Logger: slog.New(slog.NewTextHandler(c.ErrOrStderr(), nil))}
			if epoch >= 0 {
				opts.SourceDateEpoch = &epoch
			}
			res, err := build.Build(c.Context(), s, opts)
			if err != nil {
				return err
			}
			mpath := filepath.Join(out, "manifest.json")
			if priv != nil {
				if err := signFile(mpath, priv); err != nil {
					return err
				}
			}
			if storeDir != "" {
				st, err := store.Open(storeDir)
				if err != nil {
					return err
				}
				if _, err := st.Import(res.Manifest, res.Files, priv); err != nil {
					return err
				}
			}
			return render(c.OutOrStdout(), g.output, res.Manifest, func(tw *tabwriter.Writer) {
				artifactTable(tw, res.Manifest)
			})
		},
	}
	c.Flags().StringVar(&out, "out", "", "output `DIR`")
	c.Flags().StringVar(&storeDir, "store", "", "also import the outputs into this image store `DIR`")
	c.Flags().StringVar(&keyPath, "key", "", "sign the manifest with this ed25519 private `KEY` file")
	c.Flags().Int64Var(&epoch, "source-date-epoch", -1, "override the spec's source_date_epoch (`SECONDS`)")
	return c
}

func artifactTable(tw *tabwriter.Writer, m *store.Manifest) {
	fmt.Fprintf(tw, "IMAGE\t%s:%s\n", m.Name, m.Version)
	fmt.Fprintf(tw, "SPEC\t%s\n", m.SpecDigest)
	if m.Kernel != "" {
		fmt.Fprintf(tw, "KERNEL\t%s\n", m.Kernel)
	}
	if m.GPUDriver != "" {
		fmt.Fprintf(tw, "GPU DRIVER\t%s\n", m.GPUDriver)
	}
	fmt.Fprintf(tw, "BUILT\t%s\n\n", m.BuildTime)
	fmt.Fprintln(tw, "ARTIFACT\tFORMAT\tSIZE\tDIGEST")
	for _, a := range m.Artifacts {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", a.Name, a.Format, a.Size, a.Digest)
	}
}

func signFile(manifestPath string, priv ed25519.PrivateKey) error {
	mb, err := os.ReadFile(manifestPath)
	if err != nil {
		return fmt.Errorf("image sign: %w", err)
	}
	if _, err := store.ParseManifest(mb); err != nil {
		return fmt.Errorf("image sign: %s: %w", manifestPath, err)
	}
	sig, err := store.Sign(mb, priv)
	if err != nil {
		return err
	}
	return os.WriteFile(manifestPath+".sig", sig, 0o644)
}

func newImageKeygenCmd(g *globals) *cobra.Command {
	var key, pub string
	c := &cobra.Command{
		Use:   "keygen --key FILE --pub FILE",
		Short: "Create an ed25519 key pair for signing images",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if key == "" || pub == "" {
				return errors.New("image keygen: give --key and --pub file names")
			}
			k, err := store.GenerateKey(key, pub)
			if err != nil {
				return fmt.Errorf("image keygen: %w", err)
			}
			fmt.Fprintf(c.OutOrStdout(), "key %s written to %s (private) and %s (public)\n", store.KeyID(k), key, pub)
			return nil
		},
	}
	c.Flags().StringVar(&key, "key", "", "private key `FILE` to create (mode 0600)")
	c.Flags().StringVar(&pub, "pub", "", "public key `FILE` to create")
	return c
}

func newImageSignCmd(g *globals) *cobra.Command {
	var storeDir, key string
	c := &cobra.Command{
		Use:   "sign NAME:VERSION|MANIFEST.json --key FILE",
		Short: "Sign a stored image, or a build's manifest.json",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if key == "" {
				return errors.New("image sign: no --key given; create one with 'rackstrap image keygen'")
			}
			priv, err := store.LoadPrivateKey(key)
			if err != nil {
				return err
			}
			if strings.HasSuffix(args[0], ".json") {
				if err := signFile(args[0], priv); err != nil {
					return err
				}
				fmt.Fprintf(c.OutOrStdout(), "signed %s\n", args[0])
				return nil
			}
			ref, err := store.ParseRef(args[0])
			if err != nil {
				return err
			}
			st, err := store.Open(storeDir)
			if err != nil {
				return err
			}
			if err := st.Sign(ref.Name, ref.Version, priv); err != nil {
				return fmt.Errorf("image sign: %w", err)
			}
			fmt.Fprintf(c.OutOrStdout(), "signed %s\n", ref)
			return nil
		},
	}
	storeFlag(c, &storeDir)
	c.Flags().StringVar(&key, "key", "", "ed25519 private `KEY` file")
	return c
}

func newImageImportCmd(g *globals) *cobra.Command {
	var storeDir, key string
	c := &cobra.Command{
		Use:   "import BUILD-DIR",
		Short: "Import a build's outputs (manifest.json and its artifacts) into the store",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			mb, err := os.ReadFile(filepath.Join(args[0], "manifest.json"))
			if err != nil {
				return fmt.Errorf("image import: %w; is %s the --out of 'rackstrap image build'?", err, args[0])
			}
			m, err := store.ParseManifest(mb)
			if err != nil {
				return err
			}
			files := map[string]string{}
			for _, a := range m.Artifacts {
				files[a.Name] = filepath.Join(args[0], a.Name)
			}
			var priv ed25519.PrivateKey
			if key != "" {
				if priv, err = store.LoadPrivateKey(key); err != nil {
					return err
				}
			}
			st, err := store.Open(storeDir)
			if err != nil {
				return err
			}
			if _, err := st.Import(m, files, priv); err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "imported %s:%s (%d artifacts)\n", m.Name, m.Version, len(m.Artifacts))
			return nil
		},
	}
	storeFlag(c, &storeDir)
	c.Flags().StringVar(&key, "key", "", "sign with this ed25519 private `KEY` file")
	return c
}

func newImageListCmd(g *globals) *cobra.Command {
	var storeDir string
	c := &cobra.Command{
		Use:   "list",
		Short: "List the images in the store",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			st, err := store.Open(storeDir)
			if err != nil {
				return err
			}
			refs, err := st.List()
			if err != nil {
				return err
			}
			type row struct {
				Name    string `json:"name"`
				Version string `json:"version"`
				Signed  bool   `json:"signed"`
			}
			rows := []row{}
			for _, r := range refs {
				rows = append(rows, row{r.Name, r.Version, r.Signed})
			}
			return render(c.OutOrStdout(), g.output, rows, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "NAME\tVERSION\tSIGNED")
				for _, r := range rows {
					fmt.Fprintf(tw, "%s\t%s\t%v\n", r.Name, r.Version, r.Signed)
				}
			})
		},
	}
	storeFlag(c, &storeDir)
	return c
}

func loadPubs(paths []string) ([]ed25519.PublicKey, error) {
	if len(paths) == 0 {
		return nil, errors.New("no --pub given; pass the public key(s) you trust")
	}
	var out []ed25519.PublicKey
	for _, p := range paths {
		k, err := store.LoadPublicKey(p)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}

func newImageShowCmd(g *globals) *cobra.Command {
	var storeDir string
	c := &cobra.Command{
		Use:   "show NAME:VERSION",
		Short: "Show an image's manifest (not verified: use 'image verify')",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			ref, err := store.ParseRef(args[0])
			if err != nil {
				return err
			}
			st, err := store.Open(storeDir)
			if err != nil {
				return err
			}
			m, signed, err := st.UnverifiedManifest(ref.Name, ref.Version)
			if err != nil {
				return err
			}
			return render(c.OutOrStdout(), g.output, m, func(tw *tabwriter.Writer) {
				artifactTable(tw, m)
				fmt.Fprintf(tw, "\nSIGNED\t%v\n", signed)
			})
		},
	}
	storeFlag(c, &storeDir)
	return c
}

func newImageVerifyCmd(g *globals) *cobra.Command {
	var storeDir string
	var pubs []string
	c := &cobra.Command{
		Use:   "verify NAME:VERSION --pub FILE",
		Short: "Check an image's signature and every artifact's digest",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			ref, err := store.ParseRef(args[0])
			if err != nil {
				return err
			}
			keys, err := loadPubs(pubs)
			if err != nil {
				return fmt.Errorf("image verify: %w", err)
			}
			st, err := store.Open(storeDir)
			if err != nil {
				return err
			}
			m, err := st.VerifyImage(ref.Name, ref.Version, keys...)
			if err != nil {
				return fmt.Errorf("image verify: %w; do not deploy this image, rebuild or re-import it", err)
			}
			return render(c.OutOrStdout(), g.output, map[string]any{"image": ref.String(), "verified": true, "artifacts": len(m.Artifacts)}, func(tw *tabwriter.Writer) {
				fmt.Fprintf(tw, "%s\tverified\t%d artifacts\n", ref, len(m.Artifacts))
			})
		},
	}
	storeFlag(c, &storeDir)
	c.Flags().StringSliceVar(&pubs, "pub", nil, "trusted ed25519 public key `FILE` (repeatable)")
	return c
}

func newImageWriteCmd(g *globals) *cobra.Command {
	var storeDir, to, artifact string
	var pubs []string
	var resume, zeros bool
	c := &cobra.Command{
		Use:   "write NAME:VERSION --to DEVICE|FILE --pub FILE",
		Short: "Write a verified image from the store to a disk or file, checking every block",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			ref, err := store.ParseRef(args[0])
			if err != nil {
				return err
			}
			if to == "" {
				return errors.New("image write: no --to given; name the target disk or file")
			}
			keys, err := loadPubs(pubs)
			if err != nil {
				return fmt.Errorf("image write: %w", err)
			}
			st, err := store.Open(storeDir)
			if err != nil {
				return err
			}
			m, err := st.Manifest(ref.Name, ref.Version, keys...)
			if err != nil {
				return fmt.Errorf("image write: %w", err)
			}
			a, ok := m.Artifact(artifact)
			if !ok {
				return fmt.Errorf("image write: %s has no %s artifact", ref, artifact)
			}
			src, err := st.OpenArtifact(a)
			if err != nil {
				return err
			}
			defer src.Close()
			dst, err := os.OpenFile(to, os.O_RDWR|os.O_CREATE, 0o644)
			if err != nil {
				return fmt.Errorf("image write: %w", err)
			}
			defer dst.Close()
			// a disk may hold old data in the image's zero gaps: write them
			// unless told otherwise; a new file stays sparse
			if fi, err := dst.Stat(); err == nil && fi.Mode()&os.ModeDevice != 0 && !c.Flags().Changed("write-zeros") {
				zeros = true
			}
			p, err := stream.Write(c.Context(), dst, src, a, stream.Options{Resume: resume, WriteZeros: zeros})
			if err != nil {
				return err
			}
			if err := dst.Sync(); err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "wrote %s %s to %s: %d bytes written, %d zero bytes skipped, %d already correct; sha256 verified\n",
				ref, a.Name, to, p.Written, p.Zero, p.AlreadyGood)
			return nil
		},
	}
	storeFlag(c, &storeDir)
	c.Flags().StringVar(&to, "to", "", "target block device or file")
	c.Flags().StringVar(&artifact, "artifact", "raw", "artifact `NAME` or format to write")
	c.Flags().StringSliceVar(&pubs, "pub", nil, "trusted ed25519 public key `FILE` (repeatable)")
	c.Flags().BoolVar(&resume, "resume", false, "skip ranges already correct on the target")
	c.Flags().BoolVar(&zeros, "write-zeros", false, "write zero blocks too (default: on for block devices, off for files)")
	return c
}
