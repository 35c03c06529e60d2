package main

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/rackstrap/rackstrap/controller"
	"github.com/rackstrap/rackstrap/controller/fwrun"
	"github.com/rackstrap/rackstrap/firmware"
	imgstore "github.com/rackstrap/rackstrap/images/store"
)

// firmwareServeFlags turn on firmware runs and the firmware hold.
type firmwareServeFlags struct {
	dir, baseline, hold, imageURL, transfer string
	trustedKeys                             []string
	allowUnsigned                           bool
	parallel                                int
	taskTimeout, verifyTimeout, poll        time.Duration
}

func init() {
	addServeOption(serveOption{bind: func(fl *pflag.FlagSet) func() (controller.Feature, error) {
		f := &firmwareServeFlags{}
		f.register(fl)
		return f.feature
	}})
}

func (f *firmwareServeFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&f.dir, "firmware-dir", "", "firmware updates: `DIR` holding firmware baselines (YAML) and their signed packages; turns on 'rackstrap firmware apply'")
	fl.StringVar(&f.baseline, "firmware-baseline", "", "firmware updates: the baseline `NAME` (a file in --firmware-dir) nodes are held against, and the default of 'firmware apply'")
	fl.StringVar(&f.hold, "firmware-hold", "none", "firmware updates: hold nodes behind --firmware-baseline before imaging (imaging: also before hand-off), before hand-off (handoff), or not at all (none)")
	fl.StringSliceVar(&f.trustedKeys, "firmware-trusted-key", nil, "firmware updates: public key `FILE` whose package signatures are trusted (repeatable; 'rackstrap image keygen')")
	fl.BoolVar(&f.allowUnsigned, "firmware-allow-unsigned", false, "firmware updates: accept packages without a signature (trials only)")
	fl.StringVar(&f.imageURL, "firmware-image-url", "", "firmware updates: the API's `URL` as BMCs reach it, to fetch packages for SimpleUpdate (default: the API's own address)")
	fl.StringVar(&f.transfer, "firmware-transfer", "auto", "firmware updates: how packages reach BMCs: auto (multipart push where the BMC offers it, else SimpleUpdate), simple-update or multipart-push")
	fl.IntVar(&f.parallel, "firmware-parallel", 8, "firmware updates: nodes of a wave updated at once")
	fl.DurationVar(&f.taskTimeout, "firmware-task-timeout", 30*time.Minute, "firmware updates: deadline of a BMC's update task")
	fl.DurationVar(&f.verifyTimeout, "firmware-verify-timeout", 10*time.Minute, "firmware updates: deadline for the BMC to come back and report the new version")
	fl.DurationVar(&f.poll, "firmware-poll-interval", 2*time.Second, "firmware updates: how often tasks and inventories are polled")
}

func (f *firmwareServeFlags) feature() (controller.Feature, error) {
	if f.dir == "" {
		if f.baseline != "" || (f.hold != "" && f.hold != "none") {
			return nil, errors.New("--firmware-baseline and --firmware-hold need --firmware-dir: the directory holding the baselines and packages")
		}
		return nil, nil
	}
	hold, err := fwrun.ParseHold(f.hold)
	if err != nil {
		return nil, fmt.Errorf("--firmware-hold: %w", err)
	}
	var transfer firmware.Transfer
	switch f.transfer {
	case "auto", "":
	case string(firmware.TransferSimple), string(firmware.TransferPush):
		transfer = firmware.Transfer(f.transfer)
	default:
		return nil, fmt.Errorf("--firmware-transfer %q: use auto, simple-update or multipart-push", f.transfer)
	}
	var keys []ed25519.PublicKey
	for _, k := range f.trustedKeys {
		pub, err := imgstore.LoadPublicKey(k)
		if err != nil {
			return nil, fmt.Errorf("--firmware-trusted-key %s: %w", k, err)
		}
		keys = append(keys, pub)
	}
	if len(keys) == 0 && !f.allowUnsigned {
		return nil, errors.New("--firmware-dir needs --firmware-trusted-key FILE (the key package signatures are checked with), or --firmware-allow-unsigned for trials")
	}
	return controller.NewFirmwareFeature(fwrun.Config{
		Dir: f.dir, Baseline: f.baseline, Hold: hold, TrustedKeys: keys, AllowUnsigned: f.allowUnsigned,
		ImageBase: f.imageURL, Transfer: transfer, Parallel: f.parallel,
		Client: firmware.Config{TaskTimeout: f.taskTimeout, VerifyTimeout: f.verifyTimeout, PollInterval: f.poll},
	}), nil
}
