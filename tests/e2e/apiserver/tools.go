//go:build tools

// Package tools records the kube-apiserver main package as a dependency of this
// build-only module; tests/e2e/build.sh builds it with
// `go build k8s.io/kubernetes/cmd/kube-apiserver`.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
)
