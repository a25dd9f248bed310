//go:build tools

// Package kustomize only pins the Kustomize release the test bed builds (see go.mod).
package kustomize

import _ "sigs.k8s.io/kustomize/kustomize/v5"
