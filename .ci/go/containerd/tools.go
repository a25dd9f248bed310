//go:build tools

// Package containerd only pins the containerd release the test bed's kubelet runs on (see
// go.mod): the daemon, its runc shim and ctr, built from the Go module proxy.
package containerd

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
)
