package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestDemoSlurmTable(t *testing.T) {
	t.Parallel()
	lines := []string{
		"NodeName=r1-n01 Arch=x86_64 CoresPerSocket=56 CPUAlloc=0 CPUEfctv=224 CPUTot=224 CPULoad=N/A AvailableFeatures=rackstrap,profile-hgx-h100-8gpu,rack-r1,h100 ActiveFeatures=rackstrap,profile-hgx-h100-8gpu,rack-r1,h100 Gres=gpu:h100:8 NodeAddr=127.0.0.1 NodeHostName=r1-n01 RealMemory=953548 AllocMem=0 FreeMem=N/A Sockets=2 Boards=1 State=IDLE+CLOUD+DYNAMIC_NORM+POWERED_DOWN ThreadsPerCore=2 TmpDisk=0 Weight=1 Owner=N/A MCS_label=N/A Partitions=batch BootTime=None SlurmdStartTime=None",
		"NodeName=e2e-n01 CoresPerSocket=1 CPUTot=2 AvailableFeatures=rackstrap,profile-qemu-vm,rack-e2e ActiveFeatures=rackstrap,profile-qemu-vm,rack-e2e Gres=(null) NodeAddr=10.231.0.100 RealMemory=448 Sockets=2 State=IDLE+CLOUD+DRAIN+DYNAMIC_NORM+POWERED_DOWN ThreadsPerCore=1 Partitions=batch Reason=rackstrap: decommissioned [root@2026-11-24T20:00:00]",
	}
	var out bytes.Buffer
	if err := slurmTable(&out, lines); err != nil {
		t.Fatalf("slurmTable = %v", err)
	}
	for _, want := range []string{"NODE ", "IDLE+CLOUD+DYNAMIC_NORM+POWERED_DOWN", "gpu:h100:8", "rackstrap,profile-hgx-h100-8gpu,rack-r1,h100", "953548M",
		"e2e-n01", "rackstrap: decommissioned"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("slurmTable output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "(null)") {
		t.Errorf("slurmTable shows Slurm's (null) placeholder:\n%s", out.String())
	}

	out.Reset()
	if err := slurmTable(&out, nil); err != nil || !strings.Contains(out.String(), "no nodes") {
		t.Errorf("slurmTable(none) = %q, %v", out.String(), err)
	}
	if err := slurmTable(&out, []string{"garbage"}); err == nil {
		t.Error("slurmTable(garbage) = nil, want an error naming the line")
	}
}

func TestDemoSlurmModes(t *testing.T) {
	t.Parallel()
	for _, m := range []string{"auto", "on", "off"} {
		if err := validDemoSlurmMode(m); err != nil {
			t.Errorf("validDemoSlurmMode(%q) = %v", m, err)
		}
	}
	if err := validDemoSlurmMode("yes"); err == nil || !strings.Contains(err.Error(), "auto, on or off") {
		t.Errorf("validDemoSlurmMode(yes) = %v, want the modes listed", err)
	}
	// off starts nothing, says nothing at the start, and needs no root
	s, err := startDemoSlurm(context.Background(), "off")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if cfg, err := s.wait(context.Background()); cfg != nil || err != nil {
		t.Errorf("off: wait() = %+v, %v, want no Slurm", cfg, err)
	}
	var out bytes.Buffer
	s.header(&out)
	if err := s.summary(context.Background(), &out); err != nil || out.Len() != 0 {
		t.Errorf("off: header and summary wrote %q, %v; want nothing", out.String(), err)
	}
	// skipped (auto without slurmctld) says why and how to get it
	s = &demoSlurm{mode: "auto", skipped: "slurmlocal: slurm controller not installed: slurmctld not found"}
	s.header(&out)
	if !strings.Contains(out.String(), "skipped") || !strings.Contains(out.String(), "apt-get install slurmctld munge") {
		t.Errorf("auto without Slurm says %q; want why it skipped and what to install", out.String())
	}
}
