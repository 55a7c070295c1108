module github.com/trace-svc/kubectl-trace-svc/test/e2e

go 1.26.0

require (
	github.com/trace-svc/kubectl-trace-svc v0.0.0
	golang.org/x/sys v0.47.0
	k8s.io/cri-streaming v0.37.2
	k8s.io/utils v0.0.0-20260626114624-be93311217bd
)

require (
	github.com/go-logr/logr v1.4.3 // indirect
	github.com/moby/spdystream v0.5.1 // indirect
	golang.org/x/net v0.57.0 // indirect
	k8s.io/klog/v2 v2.140.0 // indirect
	k8s.io/streaming v0.37.2 // indirect
)

// The route check compares the plugin's routes with the nodes' kernels
// through the plugin's own trace/routes (CompareHop).
replace github.com/trace-svc/kubectl-trace-svc => ../..
