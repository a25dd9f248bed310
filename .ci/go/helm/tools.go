//go:build tools

// Package helm only pins the Helm release the test bed builds (see go.mod).
package helm

import _ "helm.sh/helm/v4/cmd/helm"
