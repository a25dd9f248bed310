//go:build tools

// Package tofu only pins the OpenTofu release the test bed builds (see go.mod).
package tofu

import _ "github.com/opentofu/opentofu/cmd/tofu"
