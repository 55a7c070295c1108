module github.com/trace-svc/kubectl-trace-svc/test/e2e

go 1.26.0

require golang.org/x/sys v0.47.0
