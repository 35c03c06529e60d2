package validate

import (
	"encoding/json"
	"testing"

	"github.com/rackstrap/rackstrap/hwprofiles/fixtures"
	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
	"github.com/rackstrap/rackstrap/hwprofiles/profile"
)

// FuzzValidate feeds arbitrary inventory JSON (as an agent or a BMC mapper
// could send) through Parse, Merge and Validate against every bundled
// profile: nothing panics, and the verdict agrees with the findings.
func FuzzValidate(f *testing.F) {
	// Small seeds: the fuzzer minimises every new input, and a full DGX
	// inventory (24 KB) makes each minimisation take its whole time limit.
	in, oob := fixtures.DGXH100("1650323000101"), fixtures.DGXH100OutOfBand("1650323000101")
	in.Memory.DIMMs, in.NICs, in.Disks, in.GPUs, in.PCI = in.Memory.DIMMs[:2], in.NICs[:2], in.Disks[:1], in.GPUs[:2], nil
	oob.Memory.DIMMs, oob.GPUs, oob.Firmware = oob.Memory.DIMMs[1:3], oob.GPUs[1:3], oob.Firmware[:2]
	for _, pair := range [][2]*inventory.Inventory{{in, oob}, {fixtures.QEMUVM("52:54:00:12:34:01"), nil}} {
		a, err := json.Marshal(pair[0])
		if err != nil {
			f.Fatal(err)
		}
		b, err := json.Marshal(pair[1])
		if err != nil {
			f.Fatal(err)
		}
		f.Add(a, b)
	}
	f.Add([]byte(`{"gpus":[{"index":0,"slot":"x"}],"memory":{"dimms":[{"slot":"A","empty":true}]}}`), []byte(`{"source":"out-of-band","gpus":[{"index":0},{"index":1,"serial":"s"}]}`))
	cat, err := profile.Bundled()
	if err != nil {
		f.Fatal(err)
	}
	var profiles []*profile.Profile
	for _, n := range cat.Names() {
		p, err := cat.Get(n)
		if err != nil {
			f.Fatal(err)
		}
		profiles = append(profiles, p)
	}
	f.Fuzz(func(t *testing.T, inband, oob []byte) {
		in, err := inventory.Parse(inband)
		if err != nil {
			return
		}
		out, err := inventory.Parse(oob)
		if err != nil {
			out = nil
		}
		merged := inventory.Merge(in, out)
		for _, p := range profiles {
			res := Validate(merged, p)
			errs := 0
			for _, fd := range res.Findings {
				if fd.Message == "" {
					t.Fatalf("finding without message: %+v", fd)
				}
				if fd.Severity == Error {
					errs++
				}
			}
			if errs != res.Errors || (errs > 0) != (res.Verdict == Quarantine) {
				t.Fatalf("verdict %s with %d errors counted %d", res.Verdict, errs, res.Errors)
			}
		}
	})
}
