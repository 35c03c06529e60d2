package main

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/spf13/cobra"

	"github.com/rackstrap/rackstrap/cmd/rackstrap-agent/internal/imaging"
)

// newWriteImageCmd is the image task without a controller: the same
// streaming, verifying writer, for trials and the write benchmark
// (test/bench/agent). No first-boot record is written.
func newWriteImageCmd() *cobra.Command {
	var p imaging.Payload
	var target string
	cmd := &cobra.Command{
		Use:   "write-image --url URL --sha256 HEX --size N --disk DEV|FILE [--compression zstd]",
		Short: "Stream an image from a URL to a disk or file, verified, as the image task does (no controller, no first-boot record)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Check wants the first-boot fields, which this command does not use
			p.Server, p.FirstBootToken = "-", "-"
			if !cmd.Flags().Changed("compression") && strings.HasSuffix(p.URL, ".zst") {
				p.Compression = "zstd"
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			hc := &http.Client{Transport: &http.Transport{Proxy: nil, DisableCompression: true}}
			rep, err := imaging.Write(cmd.Context(), p, imaging.Options{Target: target, HTTPClient: hc, Logger: log})
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), rep.String())
			return nil
		},
	}
	cmd.Flags().StringVar(&p.URL, "url", "", "http(s) URL of the raw image")
	cmd.Flags().StringVar(&p.SHA256, "sha256", "", "the image's sha256 (64 hex digits)")
	cmd.Flags().Int64Var(&p.Size, "size", 0, "the image's size in bytes")
	cmd.Flags().StringVar(&target, "disk", "", "block device or file to write")
	cmd.Flags().StringVar(&p.Compression, "compression", "", "how the URL's bytes are compressed: zstd, or '' for the raw image (default: zstd when the URL ends in .zst); --sha256 and --size are the raw image's")
	for _, f := range []string{"url", "sha256", "size", "disk"} {
		_ = cmd.MarkFlagRequired(f)
	}
	return cmd
}
