// Command rackstrap is the Rackstrap controller and its command-line client:
// `rackstrap serve` runs the controller, `rackstrap demo` runs a simulated rack,
// and the other verbs talk to a controller's API or work on local files.
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
