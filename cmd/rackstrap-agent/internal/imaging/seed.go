package imaging

import (
	"fmt"
	"log/slog"

	"github.com/rackstrap/rackstrap/images/seed"
)

// TaskSeed reads the cloud-init NoCloud seed an "image" task carries
// (edge.ImageTask.Seed): nil when the task has none, an error when it has
// one that is not valid. Call it before Write, so a bad seed fails the task
// before the disk is touched.
func TaskSeed(payload []byte) (*seed.Seed, error) {
	return seed.FromTask(payload)
}

// WriteSeed puts the seed into the CIDATA partition of target (the disk
// Write has just written and verified) and reads it back, so the installed
// OS's cloud-init finds the node's user data (its kubeadm join) through
// the NoCloud datasource. Writing the same seed again leaves the same
// bytes, so a task run again after a restart does no harm. The returned
// text goes into the task's message.
func WriteSeed(target string, s seed.Seed, log *slog.Logger) (string, error) {
	msg, err := seed.Apply(target, s)
	if err != nil {
		return "", fmt.Errorf("the image was written and verified, but the node's cloud-init seed could not be written, so it would boot without its user data: %w", err)
	}
	if log != nil {
		log.Info("cloud-init seed written", "target", target, "userDataBytes", len(s.UserData))
	}
	return msg, nil
}
