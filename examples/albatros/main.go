// albatros is the example program that examples/flake.nix cross-builds and releases with alba.
package main

import (
	"fmt"
	"os"
	"runtime"
)

// version is set at build time: -ldflags "-X main.version=0.9".
var version = "dev"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "--version" {
		fmt.Printf("albatros %s\n", version)
		return
	}
	fmt.Printf("albatros %s: hello from %s/%s\n", version, runtime.GOOS, runtime.GOARCH)
}
