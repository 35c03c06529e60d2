// Package firmware knows which firmware a machine runs, what it should run,
// and brings one machine there.
//
//   - Inventory reads the components a BMC exposes under Redfish
//     UpdateService/FirmwareInventory (BMC, BIOS, CPLD, NICs, GPUs, drives,
//     PSUs...), with bounded reads under a deadline.
//   - A Baseline (strict YAML, Parse/Load) names per component, matched by id
//     or name pattern, the required version or a minimum, and the package
//     that brings a component there: a file with its sha256 and, optionally,
//     an ed25519 signature (SignPackage, VerifyPackage).
//   - Compliance says, per component, compliant, behind, ahead or unknown.
//   - Plan says which nodes need which packages; Waves and NextWave are the
//     pure wave planner (a canary wave first, waves of a size, a run that stops
//     when failures reach a threshold).
//   - Client.Apply updates one component of one node through Redfish
//     SimpleUpdate or a multipart HTTP push (chosen by what the BMC's
//     UpdateService advertises), polls the BMC's task to completion under a
//     deadline,
//     applies the reset the package needs, re-reads the inventory and verifies
//     the new version. A node already at the package's version is a no-op
//     that says so; an update task already running on the BMC is waited for,
//     never doubled.
//
// The durable, resumable run across controller restarts is the controller's
// (controller/fwrun): it persists the plan, the wave outcomes and each
// Apply's task URI (Request.OnTask), and replays Apply with the same key
// and ResumeTask after a restart.
//
// The Redfish client is plain net/http rather than gofish: gofish runs its
// requests on context.Background and reads bodies unbounded, and bmclib's
// generic Redfish provider has no firmware install (see
// docs/decisions/0007-bmc-on-bmclib.md). Failures are *bmc.Error and
// *bmc.AuthError with bmc's failure classes for transport problems, and
// *Error with this package's classes for firmware ones; bmc.FailureClass
// reads both.
package firmware
