package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/rackstrap/rackstrap/cmd/rackstrap-agent/internal/burnin"
	"github.com/rackstrap/rackstrap/cmd/rackstrap-agent/internal/firstboot"
	"github.com/rackstrap/rackstrap/cmd/rackstrap-agent/internal/imaging"
	"github.com/rackstrap/rackstrap/cmd/rackstrap-agent/internal/tasks"
)

// taskFlags are the flags of the commands that run tasks.
type taskFlags struct {
	disk          string
	firstbootFile string
	state         string
	tasksFor      time.Duration
	idleExit      time.Duration
	memoryMiB     int
	diskMiB       int
}

func (tf *taskFlags) register(cmd *cobra.Command, state string, idleExit time.Duration) {
	cmd.Flags().StringVar(&tf.state, "task-state", state, "file recording the tasks run and their results, so a task handed out again is reported, not run again ('' : memory only)")
	cmd.Flags().DurationVar(&tf.tasksFor, "tasks-for", 6*time.Hour, "stop polling for tasks after this long (0: never)")
	cmd.Flags().DurationVar(&tf.idleExit, "idle-exit", idleExit, "stop once the controller has had no task for this long (0: never)")
	cmd.Flags().IntVar(&tf.memoryMiB, "burnin-memory-mib", 256, "MiB of RAM the memory burn-in check writes and verifies")
	cmd.Flags().IntVar(&tf.diskMiB, "burnin-disk-mib", 64, "MiB of each disk the disk burn-in check reads")
}

// runTasks polls for and runs the node's tasks, then prints what ran.
func runTasks(ctx context.Context, d *deps, tf *taskFlags, server, session string, hc *http.Client, handlers map[string]tasks.Handler, stdout, stderr io.Writer) error {
	parent := ctx
	if tf.tasksFor > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, tf.tasksFor)
		defer cancel()
	}
	r, err := tasks.New(tasks.Config{
		Server: server, Session: session, HTTPClient: hc, Handlers: handlers,
		StatePath: tf.state, MinPoll: d.taskMinPoll, MaxPoll: d.taskMaxPoll, IdleExit: tf.idleExit,
		Logger: slog.New(slog.NewTextHandler(stderr, nil)),
	})
	if err != nil {
		return err
	}
	before := map[string]tasks.Record{}
	for _, k := range r.State().Keys() {
		before[k], _ = r.State().Get(k)
	}
	err = r.Run(ctx)
	for _, k := range r.State().Keys() {
		rec, _ := r.State().Get(k)
		if b, ok := before[k]; ok && b.Runs == rec.Runs && b.Reported == rec.Reported {
			continue // from an earlier run, untouched
		}
		verdict := "ok"
		switch {
		case !rec.Done:
			verdict = "unfinished"
		case !rec.Outcome.OK:
			verdict = "failed"
		}
		fmt.Fprintf(stdout, "task %s (%s): %s: %s\n", k, rec.Kind, verdict, rec.Outcome.Message)
	}
	switch {
	case err == nil:
		fmt.Fprintln(stdout, "no more tasks from the controller: done")
		return nil
	case errors.Is(err, context.DeadlineExceeded) && parent.Err() == nil:
		fmt.Fprintf(stdout, "stopped polling for tasks after --tasks-for %v\n", tf.tasksFor)
		return nil
	}
	return err
}

// imageHandler runs "image" tasks: the image goes to --disk (or
// rackstrap.disk=, or the only candidate disk), and the first-boot record
// to --firstboot-file (or the tail of the disk, or a file beside a target
// file).
func imageHandler(d *deps, tf *taskFlags, sysRoot string, hc *http.Client, caPEM []byte, stderr io.Writer) tasks.Handler {
	log := slog.New(slog.NewTextHandler(stderr, nil))
	return func(ctx context.Context, t tasks.Task, resume bool) tasks.Outcome {
		var p imaging.Payload
		if err := json.Unmarshal(t.Payload, &p); err != nil {
			return tasks.Failed("image task payload is not valid: %v", err)
		}
		if err := p.Check(); err != nil {
			return tasks.Failed("%v", err)
		}
		// the node's cloud-init seed, when the task carries one: a bad one
		// fails the task before the disk is touched
		sd, err := imaging.TaskSeed(t.Payload)
		if err != nil {
			return tasks.Failed("%v", err)
		}
		target := tf.disk
		if target == "" {
			var err error
			if target, err = imaging.PickDisk(sysRoot); err != nil {
				return tasks.Failed("no target disk: %v", err)
			}
			log.Info("picked the target disk", "disk", target)
		}
		var tail int64
		if fi, err := os.Stat(target); err == nil && fi.Mode()&fs.ModeDevice != 0 && tf.firstbootFile == "" {
			tail = firstboot.TailOffset // the record goes to the disk's tail
		}
		rep, err := imaging.Write(ctx, p, imaging.Options{Target: target, HTTPClient: hc, Resume: resume, RetryWait: d.retryWait, Logger: log, TailBytes: tail})
		if err != nil {
			return tasks.Failed("%v", err)
		}
		fb := tf.firstbootFile
		if fb == "" {
			fb = target
			if !rep.Device {
				fb = target + ".firstboot.json"
			}
		}
		rec := firstboot.Record{Server: p.Server, Token: p.FirstBootToken, CA: string(caPEM), ImageSHA256: p.SHA256, WrittenAt: time.Now().UTC()}
		if err := firstboot.Save(fb, rec, p.Size); err != nil {
			return tasks.Failed("the image was written and verified, but the first-boot record could not be saved, so the installed OS could not check in: %v", err)
		}
		where := fb
		if fi, err := os.Stat(fb); err == nil && fi.Mode()&fs.ModeDevice != 0 {
			where = "the tail of " + fb
		}
		msg := rep.String() + "; first-boot record in " + where
		if sd != nil {
			m, err := imaging.WriteSeed(target, *sd, log)
			if err != nil {
				return tasks.Failed("%v", err)
			}
			msg += "; " + m
		}
		if uefi := installBootEntry(sysRoot, target, p.URL); uefi != "" {
			log.Info(uefi)
			msg += "; " + uefi
		}
		return tasks.Outcome{OK: true, Message: msg}.WithResult(rep.Result)
	}
}

// burninHandler runs "burn-in" tasks.
func burninHandler(d *deps, tf *taskFlags, sysRoot string) tasks.Handler {
	return func(ctx context.Context, t tasks.Task, _ bool) tasks.Outcome {
		var p burnin.Payload
		if err := json.Unmarshal(t.Payload, &p); err != nil {
			return tasks.Failed("burn-in task payload is not valid: %v", err)
		}
		cfg := burnin.Config{SysRoot: sysRoot, MemoryMiB: tf.memoryMiB, DiskMiB: tf.diskMiB, ProbeGPUs: d.probeGPUs, ListDisks: wholeDisks}
		if tf.disk != "" {
			cfg.Disks = []string{tf.disk}
		}
		res := burnin.Run(ctx, p.Checks, cfg)
		return tasks.Outcome{OK: len(res.Failed()) == 0, Message: res.Summary()}.WithResult(res)
	}
}

// wholeDisks lists the disks the disk burn-in check reads: every whole,
// non-removable disk with a medium.
func wholeDisks(root string) ([]string, error) {
	disks, err := imaging.Disks(root)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, d := range disks {
		if d.SizeBytes > 0 && d.Excluded != "removable" && d.Excluded != "on USB (the boot medium?)" {
			out = append(out, d.Path)
		}
	}
	return out, nil
}

// findFirstbootDisk is --state auto: the whole disk whose tail holds a
// first-boot record (the installed OS need not know its disk's name).
func findFirstbootDisk(root string) (string, error) {
	disks, err := wholeDisks(root)
	if err != nil {
		return "", fmt.Errorf("--state auto: %w", err)
	}
	var errs []error
	for _, d := range disks {
		if _, err := firstboot.Load(d); err == nil {
			return d, nil
		} else {
			errs = append(errs, err)
		}
	}
	return "", fmt.Errorf("--state auto: no disk holds a first-boot record (looked at %v): %w; was this disk imaged by Rackstrap?", disks, errors.Join(errs...))
}
