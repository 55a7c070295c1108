module github.com/trace-svc/kubectl-trace-svc/test/e2e

go 1.26.0

require (
	github.com/trace-svc/kubectl-trace-svc v0.0.0
	golang.org/x/sys v0.47.0
)

// The route check compares the plugin's routes with the nodes' kernels
// through the plugin's own trace/routes (CompareHop).
replace github.com/trace-svc/kubectl-trace-svc => ../..
